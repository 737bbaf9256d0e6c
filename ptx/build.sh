#!/usr/bin/env bash
# Regenerates ptx/*.ptx from ptx/*.cu with the pinned CUDA toolchain (nvcc 13.0.88, PTX ISA 9.0,
# see DESIGN.md), or checks that the committed .ptx files are exactly what it would produce.
#
#   bash ptx/build.sh           compile every ptx/*.cu to ptx/*.ptx (in place)
#   bash ptx/build.sh --check   compile into a temp dir, diff against the committed .ptx, and
#                               assemble each committed .ptx with ptxas for sm_80 and sm_90
#
# The toolchain is installed with pip (no GPU and no system CUDA needed) into
# ${ILREC_CACHE:-$HOME/.cache/ilrec}/cuda-13.0 on first use. Set NVCC=/path/to/nvcc to use
# another install (ptxas is taken from beside it); it must still be 13.0 for --check to match.
set -euo pipefail

PTX_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLCHAIN_DIR="${ILREC_CACHE:-$HOME/.cache/ilrec}/cuda-13.0"
PIP_PACKAGES=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96
              nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88)
# Every kernel file is compiled for the oldest architecture we support; the driver JIT-compiles
# the PTX for newer GPUs (sm_90 is checked with ptxas below).
ARCH=sm_80
EXPECTED_PTX_VERSION=".version 9.0"

die() { echo "ptx/build.sh: error: $*" >&2; exit 1; }

install_toolchain() {
    echo "ptx/build.sh: installing the CUDA 13.0 compiler with pip into $TOOLCHAIN_DIR" >&2
    command -v python3 >/dev/null || die "python3 not found; it is needed to pip-install nvcc"
    local log
    log="$(mktemp)"
    if ! python3 -m pip install --quiet --disable-pip-version-check --no-deps \
            --target "$TOOLCHAIN_DIR" "${PIP_PACKAGES[@]}" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "pip could not install ${PIP_PACKAGES[*]}: is the package registry (PyPI or the \
configured index) reachable from this machine? Without it there is no nvcc to check the PTX."
    fi
    rm -f "$log"
}

find_nvcc() {
    if [[ -n "${NVCC:-}" ]]; then
        [[ -x "$NVCC" ]] || die "NVCC=$NVCC is not an executable"
        return
    fi
    NVCC="$TOOLCHAIN_DIR/nvidia/cu13/bin/nvcc"
    [[ -x "$NVCC" ]] || install_toolchain
    [[ -x "$NVCC" ]] || die "pip finished but $NVCC does not exist"
}

# compile SRC.cu OUT.ptx: run from inside ptx/ with a relative source name so that no absolute
# path can end up in the output; without -lineinfo/-G nvcc writes no .file directives, and its
# header holds only the compiler version, so the output is byte-for-byte reproducible.
compile() {
    local src="$1" out="$2"
    (cd "$PTX_DIR" && "$NVCC" -ptx -arch="$ARCH" "$(basename "$src")" -o "$out")
    grep -qxF "$EXPECTED_PTX_VERSION" "$out" \
        || die "$out: expected '$EXPECTED_PTX_VERSION', nvcc wrote '$(grep -m1 '^\.version' "$out")'"
    if grep -qF "$PTX_DIR" "$out"; then
        die "$out contains the build path $PTX_DIR; the output would not be reproducible"
    fi
}

build() {
    local src
    for src in "$PTX_DIR"/*.cu; do
        compile "$src" "${src%.cu}.ptx"
        echo "ptx/build.sh: wrote ptx/$(basename "${src%.cu}.ptx")"
    done
}

check() {
    local src name ptx arch failed=0
    # global, not local: the EXIT trap runs after this function has returned
    CHECK_TMP="$(mktemp -d)"
    trap 'rm -rf "$CHECK_TMP"' EXIT
    local tmp="$CHECK_TMP"
    local ptxas
    ptxas="$(dirname "$NVCC")/ptxas"
    [[ -x "$ptxas" ]] || die "ptxas not found beside $NVCC"

    for src in "$PTX_DIR"/*.cu; do
        name="$(basename "${src%.cu}")"
        if [[ ! -f "$PTX_DIR/$name.ptx" ]]; then
            echo "ptx/build.sh: ptx/$name.ptx is missing; run 'bash ptx/build.sh' and commit it" >&2
            failed=1
            continue
        fi
        compile "$src" "$tmp/$name.ptx"
        if ! diff -u "$PTX_DIR/$name.ptx" "$tmp/$name.ptx" >"$tmp/$name.diff"; then
            head -n 40 "$tmp/$name.diff" >&2
            echo "ptx/build.sh: ptx/$name.ptx is stale: it differs from what ptx/$name.cu" \
                 "compiles to; run 'bash ptx/build.sh' and commit it" >&2
            failed=1
        fi
    done

    for ptx in "$PTX_DIR"/*.ptx; do
        name="$(basename "$ptx")"
        [[ -f "${ptx%.ptx}.cu" ]] || { echo "ptx/build.sh: ptx/$name has no .cu source" >&2; failed=1; }
        for arch in sm_80 sm_90; do
            if "$ptxas" -arch="$arch" "$ptx" -o "$tmp/$name.$arch.cubin"; then
                echo "ptx/build.sh: ptx/$name assembles for $arch"
            else
                echo "ptx/build.sh: ptx/$name does not assemble for $arch" >&2
                failed=1
            fi
        done
    done
    [[ $failed == 0 ]] || die "PTX check failed"
    echo "ptx/build.sh: all PTX up to date and assembling for sm_80 and sm_90"
}

case "${1:-}" in
    "") find_nvcc; echo "ptx/build.sh: using $("$NVCC" --version | tail -n 2 | head -n 1)"; build ;;
    --check) find_nvcc; check ;;
    *) die "unknown argument '$1' (usage: bash ptx/build.sh [--check])" ;;
esac
