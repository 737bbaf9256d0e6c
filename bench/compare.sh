#!/usr/bin/env bash
# Runs our training step and PyTorch's in alternation R times (same config, batch, sequence
# length, threads) and prints each run's JSON line, then the ratio ours / PyTorch of the median
# step time (min / median / max over the R pairs) and both peak RSS.
#
#   bench/compare.sh [R=3] [CONFIG=bench/smollm2-135m.json] [STEPS=3] [THREADS=2] [OBJECTIVE=lm]
#   PYTHON=/tmp/hfenv/bin/python (any python with `pip install torch transformers`)
#
# The machine may be shared: run it when `uptime` shows a load below the thread count, and read
# the per-pair ratios, not single times.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-3}
CONFIG=${2:-bench/smollm2-135m.json}
STEPS=${3:-3}
THREADS=${4:-2}
OBJECTIVE=${5:-lm}
PYTHON=${PYTHON:-/tmp/hfenv/bin/python}
B=${B:-4}
T=${T:-128}

cargo build --release --quiet --bin bench
ours_log=$(mktemp)
torch_log=$(mktemp)
trap 'rm -f "$ours_log" "$torch_log"' EXIT
echo "load before: $(uptime)"
for i in $(seq 1 "$R"); do
    ./target/release/bench train-step --config "$CONFIG" --batch "$B" --seq "$T" \
        --steps "$STEPS" --threads "$THREADS" --objective "$OBJECTIVE" --json | tee -a "$ours_log"
    "$PYTHON" bench/pytorch_step.py --config "$CONFIG" --batch "$B" --seq "$T" \
        --steps "$STEPS" --threads "$THREADS" | tee -a "$torch_log"
done
echo "load after: $(uptime)"
"$PYTHON" - "$ours_log" "$torch_log" <<'PY'
import json, sys
ours = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
torch = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
ratios = sorted(o["ms_per_step_median"] / t["ms_per_step_median"] for o, t in zip(ours, torch))
cpu = sorted(t["gflops_per_cpu_s"] / o["gflops_per_cpu_s"] for o, t in zip(ours, torch)
             if o.get("gflops_per_cpu_s") and t.get("gflops_per_cpu_s"))
med = lambda xs: xs[len(xs) // 2]
print(json.dumps({
    "pairs": len(ratios),
    "ratio_ms_ours_over_pytorch": {"min": round(ratios[0], 3), "median": round(med(ratios), 3),
                                   "max": round(ratios[-1], 3)},
    "ratio_cpu_s_ours_over_pytorch": {"min": round(cpu[0], 3), "median": round(med(cpu), 3),
                                      "max": round(cpu[-1], 3)} if cpu else None,
    "ours_ms_median": med(sorted(o["ms_per_step_median"] for o in ours)),
    "pytorch_ms_median": med(sorted(t["ms_per_step_median"] for t in torch)),
    "ours_peak_rss_mb": max(o["peak_rss_mb"] for o in ours),
    "pytorch_peak_rss_mb": max(t["peak_rss_mb"] for t in torch),
}))
PY
