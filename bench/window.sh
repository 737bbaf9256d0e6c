#!/usr/bin/env bash
# One timing window with every step ratio of issues 15 and 17, alternated so that the machine's
# drift hits both sides of each pair: ILRec vs SFT (SID and title items), our full step vs
# PyTorch's, our LoRA step vs PyTorch + PEFT; `bench peak` before and after. One JSON line per
# run on stdout, prefixed by its tag. Needs `cargo build --release --bin bench` and a Python
# with torch, transformers and peft (PYTHON, default python3). Stop other work first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
B=./target/release/bench
C="--config bench/smollm2-135m.json --batch 4 --seq 128 --steps 6 --threads 2"
L="--lora r=16,alpha=32,dropout=0.05,targets=all"
tag() { local t=$1; shift; echo "$t $("$@" 2>/dev/null | tail -1)"; }
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
