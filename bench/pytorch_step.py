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

--lora SPEC (same syntax as `bench train-step --lora` and `train --lora`, e.g.
r=16,alpha=32,dropout=0.05,targets=all) wraps the model with PEFT (`pip install peft`; PEFT's
default init, so B = 0) and trains the adapter only: the optimizer holds only the LoRA
parameters, the base is frozen. The "gflops" field keeps the full step's FLOP count (the same
work unit as ours).
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


PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def parse_lora(spec):
    """`r=16,alpha=32,dropout=0.05,targets=q,v,layers=0,1` -> dict; defaults as ours (the paper's)."""
    out = {"r": 64, "alpha": 32.0, "dropout": 0.05, "targets": list(PROJECTIONS), "layers": None}
    key = None
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if "=" in part:
            key, value = part.split("=", 1)
            values = [value]
        else:
            values = [part]
        if key in ("targets", "layers"):
            out.setdefault("_" + key, []).extend(values)
        elif key == "r":
            out["r"] = int(values[0])
        elif key in ("alpha", "dropout"):
            out[key] = float(values[0])
        else:
            raise SystemExit(f"--lora: unknown key {key}")
    if "_targets" in out:
        t = out.pop("_targets")
        out["targets"] = list(PROJECTIONS) if "all" in t else [x if x.endswith("_proj") else x + "_proj" for x in t]
    if "_layers" in out:
        out["layers"] = [int(x) for x in out.pop("_layers")]
    return out


def with_lora(model, spec):
    from peft import LoraConfig, get_peft_model
    s = parse_lora(spec)
    cfg = LoraConfig(r=s["r"], lora_alpha=s["alpha"], lora_dropout=s["dropout"], bias="none",
                     target_modules=s["targets"], layers_to_transform=s["layers"], task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="accepted for symmetry; output is JSON")
    ap.add_argument("--lora", default=None, help="r=16,alpha=32,dropout=0.05,targets=all|q,v,...")
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
    if a.lora:
        model = with_lora(model, a.lora)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.01)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.seq), generator=g)

    def step():
        t0 = time.perf_counter()
        out = model(input_ids=ids, labels=ids, use_cache=False)
        t1 = time.perf_counter()
        out.loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
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
        "objective": "sft lora " + a.lora if a.lora else "sft",
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
