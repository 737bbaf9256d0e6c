#!/usr/bin/env python3
"""Our GEMM (`bench gemm`) against numpy's OpenBLAS on the SmolLM2-135M training-step shapes.

Both run in this one process tree, in alternation (ours, OpenBLAS with its default kernel choice,
OpenBLAS forced to Haswell, ours, ...), `--rounds` times per shape; each round times `reps`
repetitions and keeps their median; the table prints the median over rounds and the spread
(min-max of the round medians) as the noise record. On a shared machine read the ratios, which
come from interleaved rounds, rather than absolute numbers.

Install (git-ignored venv): python3 -m venv .cache/venv && .cache/venv/bin/pip install numpy threadpoolctl
Run:     cargo build --release --bin bench && .cache/venv/bin/python bench/gemm_openblas.py

OpenBLAS reads OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE when it loads, so each setting runs in its own
worker process: "default" has both removed from its environment (OpenBLAS detects the CPU itself),
"Haswell" sets OPENBLAS_CORETYPE=Haswell (the AVX2 kernel). Each worker reports, through
threadpoolctl, the kernel ("architecture") OpenBLAS actually picked and its thread count.

The shapes: `Tape::linear` computes Y = X . W^T (NT), dX = dY . W (NN), dW = dY^T . X (TN), with
X (m = B*T = 512, in), W (out, in), for q/o (576 -> 576), k/v (576 -> 192), gate/up (576 -> 1536),
down (1536 -> 576) and the tied LM head (576 -> 49152).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WORKER = r"""
import json, sys, time
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits
threads = int(sys.argv[1])
limits = threadpool_limits(limits=threads, user_api="blas")
info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
print(json.dumps({"info": info}), flush=True)
cache = {}
for line in sys.stdin:
    q = json.loads(line)
    m, n, k, ta, tb, reps = q["m"], q["n"], q["k"], q["ta"], q["tb"], q["reps"]
    key = (m, n, k, ta, tb)
    if key not in cache:
        cache.clear()
        rng = np.random.default_rng(1)
        a = rng.uniform(-1, 1, (k, m) if ta else (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (n, k) if tb else (k, n)).astype(np.float32)
        cache[key] = (a.T if ta else a, b.T if tb else b, np.zeros((m, n), np.float32))
    a, b, c = cache[key]
    np.matmul(a, b, out=c)  # warm-up (threads, page faults)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - t)
    print(json.dumps({"times": times}), flush=True)
"""

# (role, m, n, k, ta, tb) for the SmolLM2-135M step, B 4, T 128.
def step_shapes(rows=512, hidden=576, kv=192, inter=1536, vocab=49152):
    layers = [("q/o", hidden, hidden), ("k/v", hidden, kv), ("gate/up", hidden, inter),
              ("down", inter, hidden), ("lm head", hidden, vocab)]
    shapes = []
    for name, fan_in, fan_out in layers:
        shapes.append((f"{name} fwd Y=X.W^T", rows, fan_out, fan_in, False, True))
        shapes.append((f"{name} dX=dY.W", rows, fan_in, fan_out, False, False))
        shapes.append((f"{name} dW=dY^T.X", fan_out, fan_in, rows, True, False))
    return shapes


class Worker:
    """One numpy process with its own OpenBLAS environment."""

    def __init__(self, label, coretype, threads, python):
        env = {k: v for k, v in os.environ.items()
               if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        if coretype is not None:
            env["OPENBLAS_CORETYPE"] = coretype
        env["OPENBLAS_NUM_THREADS"] = str(threads)
        self.label = label
        self.proc = subprocess.Popen([python, "-c", WORKER, str(threads)], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.info = json.loads(self.proc.stdout.readline())["info"]

    def time(self, m, n, k, ta, tb, reps):
        q = dict(m=m, n=n, k=k, ta=ta, tb=tb, reps=reps)
        self.proc.stdin.write(json.dumps(q) + "\n")
        self.proc.stdin.flush()
        return statistics.median(json.loads(self.proc.stdout.readline())["times"])

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def ours(bench, m, n, k, ta, tb, reps, threads, isa):
    cmd = [bench, "gemm", "--m", str(m), "--n", str(n), "--k", str(k), "--threads", str(threads),
           "--reps", str(reps), "--json"] + (["--ta"] if ta else []) + (["--tb"] if tb else [])
    if isa:
        cmd += ["--isa", isa]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["ms_median"] / 1e3


def peak(bench, threads):
    out = subprocess.run([bench, "peak", "--threads", str(threads), "--json"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default="target/release/bench")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--settle", type=float, default=0.5,
                    help="seconds to wait before each of our runs (OpenBLAS's threads spin down)")
    ap.add_argument("--seconds", type=float, default=0.25,
                    help="target time of one round per implementation (sets reps)")
    ap.add_argument("--isa", default=None, help="our kernel (scalar|avx2|avx512), default: detect")
    ap.add_argument("--coretypes", default="default,Haswell",
                    help="comma list: default (env unset) and/or OPENBLAS_CORETYPE values")
    ap.add_argument("--only", default=None, help="substring filter on the shape names")
    ap.add_argument("--json", action="store_true", help="also print one JSON line per shape")
    args = ap.parse_args()

    with open("/proc/cpuinfo") as f:
        model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    print(f"cpu: {model}; threads {args.threads}; rounds {args.rounds}; load {loadavg()}")
    pk = peak(args.bench, args.threads)
    print(f"bench peak --threads {args.threads}: AVX2 {pk['gflops']} GFLOP/s "
          f"({pk['gflops_per_cpu_s']} per CPU-second), AVX-512 {pk['gflops_avx512']}")
    # "% peak" is against the peak of the kernel ours runs: AVX-512's when it is asked for, or
    # detected (no --isa) on a machine that has it (set --isa avx2 with ILREC_NO_AVX512).
    avx512 = args.isa == "avx512" or (args.isa is None and pk.get("gflops_avx512"))
    our_peak = pk.get("gflops_avx512") if avx512 else pk["gflops"]
    print(f"ours % peak: against the {'AVX-512' if avx512 else 'AVX2'} peak, {our_peak} GFLOP/s")
    workers = []
    for ct in args.coretypes.split(","):
        w = Worker(ct, None if ct == "default" else ct, args.threads, sys.executable)
        i = w.info[0] if w.info else {}
        print(f"OpenBLAS [{ct}]: {i.get('internal_api')} {i.get('version')}, kernel "
              f"{i.get('architecture')}, {i.get('num_threads')} threads")
        workers.append(w)

    head = " | ".join(["shape", "m x n x k", "ours GFLOP/s"] +
                      [f"OpenBLAS {w.label}" for w in workers] +
                      [f"ours/{w.label}" for w in workers] + ["ours % peak", "load"])
    print("\n| " + head + " |\n|" + "---|" * (head.count("|") + 1))
    for name, m, n, k, ta, tb in step_shapes():
        if args.only and args.only not in name:
            continue
        flops = 2.0 * m * n * k
        reps = max(3, min(200, int(args.seconds / (flops / 100e9))))
        load0 = loadavg()
        t_ours, t_theirs = [], [[] for _ in workers]
        for _ in range(args.rounds):
            # OpenBLAS's threads busy-wait for a while after each call before they sleep; ours,
            # started at once, would share both cores with them (seen with its SkylakeX kernel:
            # our 1 ms products at half speed). Let them go to sleep first.
            time.sleep(args.settle)
            t_ours.append(ours(args.bench, m, n, k, ta, tb, reps, args.threads, args.isa))
            for w, ts in zip(workers, t_theirs):
                ts.append(w.time(m, n, k, ta, tb, reps))
        g = lambda ts: sorted(flops / t / 1e9 for t in ts)
        fmt = lambda gs: f"{statistics.median(gs):.1f} ({gs[0]:.0f}-{gs[-1]:.0f})"
        g_ours = g(t_ours)
        g_theirs = [g(ts) for ts in t_theirs]
        # Ratio per round (interleaved pairs), then the median: robust to slow phases.
        ratios = [sorted(o / t for o, t in zip(t_theirs_i, t_ours)) for t_theirs_i in t_theirs]
        shape = f"{m}x{n}x{k}" + (" ta" if ta else "") + (" tb" if tb else "")
        pct = 100 * statistics.median(g_ours) / our_peak if our_peak else float("nan")
        cells = ([name, shape, fmt(g_ours)] + [fmt(x) for x in g_theirs] +
                 [f"{statistics.median(r):.2f}" for r in ratios] + [f"{pct:.0f}%",
                  f"{load0}-{loadavg()}"])
        print("| " + " | ".join(cells) + " |", flush=True)
        if args.json:
            print(json.dumps(dict(shape=name, m=m, n=n, k=k, ta=ta, tb=tb, reps=reps,
                                  ours_gflops=g_ours, openblas_gflops=dict(
                                      zip([w.label for w in workers], g_theirs)))), flush=True)
    for w in workers:
        w.close()
    print(f"load at end {loadavg()}")


if __name__ == "__main__":
    main()
