#!/usr/bin/env bash
# One timing window with every step ratio of issues 15 and 17, alternated so that the machine's
# drift hits both sides of each pair: ILRec vs SFT (SID and title items), our full step vs
# PyTorch's, our LoRA step vs PyTorch + PEFT; `bench peak` before and after. One JSON line per
# run on stdout, prefixed by its tag, then the ratios of each pair and their medians. Needs
# `cargo build --release --bin bench` and a Python with torch, transformers and peft (PYTHON,
# default python3). Stop other work first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
B=./target/release/bench
C="--config bench/smollm2-135m.json --batch 4 --seq 128 --steps 6 --threads 2"
L="--lora r=16,alpha=32,dropout=0.05,targets=all"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
tag() { local t=$1; shift; echo "$t $("$@" 2>/dev/null | tail -1)" | tee -a "$log"; }
echo "start $(date -u +%FT%T) $(uptime)"
tag peak $B peak --threads 2 --json
for items in sid title; do for i in 1 2 3; do for o in sft ilrec; do
  tag ours-$o-$items $B train-step $C --objective $o --items $items --json
done; done; done
for i in 1 2 3; do
  tag ours-full $B train-step $C --json
  tag torch-full $PY bench/pytorch_step.py $C
  tag ours-lora $B train-step $C $L --json
  tag torch-lora $PY bench/pytorch_step.py $C $L
done
tag peak $B peak --threads 2 --json
echo "end $(date -u +%FT%T) $(uptime)"
# The ratios, pair by pair (the i-th run of one tag against the i-th of the other), and medians.
"$PY" - "$log" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    tag, _, rest = line.partition(" ")
    if tag != "peak" and rest.strip().startswith("{"):
        runs.setdefault(tag, []).append(json.loads(rest)["ms_per_step_median"])
pairs = [("ours-ilrec-sid", "ours-sft-sid", "ILRec / SFT, SID items"),
         ("ours-ilrec-title", "ours-sft-title", "ILRec / SFT, title items"),
         ("ours-lora", "ours-full", "our LoRA step / our full step"),
         ("ours-full", "torch-full", "our full step / PyTorch's"),
         ("ours-lora", "torch-lora", "our LoRA step / PyTorch + PEFT's")]
for a, b, name in pairs:
    ratios = [x / y for x, y in zip(runs.get(a, []), runs.get(b, []))]
    if ratios:
        shown = " / ".join(f"{r:.3f}" for r in ratios)
        print(f"ratio {name}: pairs {shown}, median {statistics.median(ratios):.3f}")
PY
