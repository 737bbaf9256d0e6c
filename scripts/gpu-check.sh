#!/usr/bin/env bash
# Runs every CUDA parity test binary on a machine with an NVIDIA GPU and no Rust toolchain, and
# prints a summary. Build the binaries first, on any machine with Rust (no GPU needed):
#
#   cargo test --release --features cuda --no-run
#
# then copy the repository (or at least target/release/deps/*_parity-*) to the GPU machine and
#
#   bash scripts/gpu-check.sh [DEPS_DIR]        (default DEPS_DIR: target/release/deps)
#
# For each test name in PARITY_TESTS the newest executable DEPS_DIR/<name>-<hash> is run with a
# time limit of PER_TEST_LIMIT seconds (default 120); the whole check stops starting new
# binaries after TOTAL_LIMIT seconds (default 420, leaving headroom under 8 minutes). A binary
# counts as
#   PASS     it exited 0 and printed no "skipped CUDA parity" line (every CUDA body ran),
#   SKIPPED  it exited 0 but skipped CUDA bodies (no GPU/driver seen, or built without
#            --features cuda): on a GPU machine that is a failure of the check,
#   FAIL     it exited non-zero (a parity assertion, a CUDA error), TIMEOUT past its limit,
#   MISSING  no binary was found (build with the command above).
# Exit status 0 only when every binary PASSes. Logs: $LOG_DIR (default target/gpu-check-logs/).
set -uo pipefail

cd "$(dirname "$0")/.."

DEPS_DIR="${1:-target/release/deps}"
PER_TEST_LIMIT="${PER_TEST_LIMIT:-120}"
TOTAL_LIMIT="${TOTAL_LIMIT:-420}"
LOG_DIR="${LOG_DIR:-target/gpu-check-logs}"
# Every tests/*_parity.rs, by binary name.
PARITY_TESTS=(elementwise_parity gemm_parity ops_parity attention_parity)

mkdir -p "$LOG_DIR"
echo "gpu-check: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), binaries from $DEPS_DIR"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
        | sed 's/^/gpu-check: GPU: /'
else
    echo "gpu-check: warning: nvidia-smi not found; the tests will report whether a driver is usable"
fi

# The newest regular executable DEPS_DIR/NAME-<16 hex digits> (cargo leaves older builds
# beside it), or nothing.
find_binary() {
    local name="$1" best="" f
    for f in "$DEPS_DIR/$name"-*; do
        [[ -f "$f" && -x "$f" && "$(basename "$f")" =~ ^${name}-[0-9a-f]{16}$ ]] || continue
        if [[ -z "$best" || "$f" -nt "$best" ]]; then best="$f"; fi
    done
    echo "$best"
}

start=$SECONDS
failures=0
summary=()
for name in "${PARITY_TESTS[@]}"; do
    elapsed=$((SECONDS - start))
    if ((elapsed >= TOTAL_LIMIT)); then
        summary+=("$(printf '%-20s %-8s %s' "$name" "NOT RUN" "total time limit ${TOTAL_LIMIT}s reached")")
        failures=$((failures + 1))
        continue
    fi
    bin="$(find_binary "$name")"
    if [[ -z "$bin" ]]; then
        summary+=("$(printf '%-20s %-8s %s' "$name" "MISSING" "no $DEPS_DIR/$name-<hash>; run: cargo test --release --features cuda --no-run")")
        failures=$((failures + 1))
        continue
    fi
    limit=$((TOTAL_LIMIT - elapsed < PER_TEST_LIMIT ? TOTAL_LIMIT - elapsed : PER_TEST_LIMIT))
    log="$LOG_DIR/$name.log"
    echo "gpu-check: running $(basename "$bin") (limit ${limit}s)"
    t0=$SECONDS
    timeout --kill-after=10 "$limit" "$bin" --test-threads=1 >"$log" 2>&1
    rc=$?
    secs=$((SECONDS - t0))
    tests_line="$(grep -E '^test result:' "$log" | tail -n 1)"
    skips=$(grep -c 'skipped CUDA parity' "$log")
    if ((rc == 124 || rc == 137)); then
        status=TIMEOUT
    elif ((rc != 0)); then
        status=FAIL
    elif ((skips > 0)); then
        status=SKIPPED
    else
        status=PASS
    fi
    [[ $status == PASS ]] || failures=$((failures + 1))
    detail="${secs}s; ${tests_line:-no test summary}"
    ((skips > 0)) && detail+="; $skips CUDA bodies skipped: $(grep -m1 'skipped CUDA parity' "$log" | sed 's/.*: //')"
    summary+=("$(printf '%-20s %-8s %s' "$name" "$status" "$detail")")
    if [[ $status == FAIL || $status == TIMEOUT ]]; then
        echo "gpu-check: --- last lines of $log ---"
        grep -E 'panicked|CUDA failed|error' "$log" | head -n 20
        tail -n 5 "$log"
    fi
done

echo
echo "gpu-check: summary ($((SECONDS - start))s in all; logs in $LOG_DIR/)"
printf '  %s\n' "${summary[@]}"
if ((failures > 0)); then
    echo "gpu-check: $failures of ${#PARITY_TESTS[@]} parity binaries did not pass"
    exit 1
fi
echo "gpu-check: every parity binary passed with its CUDA bodies run"
