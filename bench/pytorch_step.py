#!/usr/bin/env python3
"""The PyTorch side of `bench train-step`: the same training step in Hugging Face transformers.

Install: `pip install torch transformers` (measured with torch 2.15 / transformers 5.24, CPU).

Same problem as `cargo run --release --bin bench -- train-step`: a randomly initialised
LlamaForCausalLM from the same config.json (f32), a fixed random batch of B x T token ids, labels
= the ids (HF shifts them: mean next-token cross-entropy over every position), backward,
clip_grad_norm_(1.0), one AdamW step (lr 1e-4, weight decay 0.01, PyTorch's other defaults),
zero_grad. One warm-up step, then --steps timed ones. Prints one JSON line with the same fields
as ours: ms_per_step_median, tokens_per_s, gflops (same FLOP formula: see train_step_flops in
src/model/speed.rs), peak_rss_mb (ru_maxrss of this process).

    /tmp/hfenv/bin/python bench/pytorch_step.py --config bench/smollm2-135m.json \
        --batch 4 --seq 128 --steps 3 --threads 2
"""
import argparse
import json
import resource
import time


def train_step_flops(cfg, batch, seq):
    d, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = cfg.get("head_dim") or d // cfg["num_attention_heads"]
    q = cfg["num_attention_heads"] * hd
    kv = cfg["num_key_value_heads"] * hd
    layers = cfg["num_hidden_layers"]
    per_block = d * q + 2 * d * kv + q * d + 3 * d * f
    tokens = batch * seq
    return 6 * per_block * layers * tokens + 6 * tokens * d * v + 12 * layers * tokens * seq * q


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="accepted for symmetry; output is JSON")
    a = ap.parse_args()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with open(a.config) as fh:
        raw = json.load(fh)
    cfg = LlamaConfig(**raw)
    cfg._attn_implementation = "sdpa"
    model = LlamaForCausalLM(cfg).float().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.seq), generator=g)

    def step():
        t0 = time.perf_counter()
        out = model(input_ids=ids, labels=ids, use_cache=False)
        t1 = time.perf_counter()
        out.loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        return (t1 - t0, t2 - t1, t3 - t2), out.loss.item()

    step()  # warm-up
    phases, loss = [], 0.0
    cpu0 = time.process_time()
    for _ in range(max(1, a.steps)):
        p, loss = step()
        phases.append(p)
    cpu = time.process_time() - cpu0
    totals = sorted(sum(p) for p in phases)
    med = lambda xs: sorted(xs)[len(xs) // 2]
    median = med(totals)
    flops = train_step_flops(raw, a.batch, a.seq)
    print(json.dumps({
        "impl": "pytorch",
        "torch": torch.__version__,
        "objective": "sft",
        "batch": a.batch,
        "seq": a.seq,
        "threads": torch.get_num_threads(),
        "steps": len(phases),
        "ms_per_step_median": round(median * 1e3, 1),
        "ms_per_step_min": round(totals[0] * 1e3, 1),
        "ms_per_step_max": round(totals[-1] * 1e3, 1),
        "ms_forward_median": round(med([p[0] for p in phases]) * 1e3, 1),
        "ms_backward_median": round(med([p[1] for p in phases]) * 1e3, 1),
        "ms_optimizer_median": round(med([p[2] for p in phases]) * 1e3, 1),
        "tokens_per_s": round(a.batch * a.seq / median, 1),
        "gflops": round(flops / median / 1e9, 2),
        "gflops_per_cpu_s": round(flops * len(phases) / cpu / 1e9, 2) if cpu > 0.05 else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 2),
        "loss": round(loss, 5),
    }))


if __name__ == "__main__":
    main()
