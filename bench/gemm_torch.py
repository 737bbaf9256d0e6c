#!/usr/bin/env python3
"""PyTorch's matrix product (MKL on x86 CPU builds) on the SmolLM2-135M training-step shapes,
for comparison with `bench gemm` in the same minutes (BENCHMARKS.md).

Each shape: `torch.matmul(a, b, out=c)` with the transposes `Tape::linear` uses, 3 warm-up
calls, then at least 5 timed calls (more for small shapes, ~3 GFLOP in all); prints the
median GFLOP/s. Run: python bench/gemm_torch.py [--threads 2]
"""
import argparse
import statistics
import time

import torch

# (name, m, n, k, A stored transposed, B stored transposed), B*T = 512 rows.
SHAPES = [
    ("q/o fwd", 512, 576, 576, False, True),
    ("q/o dX", 512, 576, 576, False, False),
    ("q/o dW", 576, 576, 512, True, False),
    ("k/v fwd", 512, 192, 576, False, True),
    ("gate/up fwd", 512, 1536, 576, False, True),
    ("gate/up dX", 512, 576, 1536, False, False),
    ("gate/up dW", 1536, 576, 512, True, False),
    ("LM head fwd", 512, 49152, 576, False, True),
    ("LM head dX", 512, 576, 49152, False, False),
    ("LM head dW", 49152, 576, 512, True, False),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")
    for name, m, n, k, ta, tb in SHAPES:
        a = torch.rand(k, m).t() if ta else torch.rand(m, k)
        b = torch.rand(n, k).t() if tb else torch.rand(k, n)
        c = torch.empty(m, n)
        flops = 2 * m * n * k
        for _ in range(3):
            torch.matmul(a, b, out=c)
        times = []
        for _ in range(max(5, int(3e9 / flops))):
            t = time.perf_counter()
            torch.matmul(a, b, out=c)
            times.append(time.perf_counter() - t)
        gflops = flops / statistics.median(times) / 1e9
        print(f"{name:12s} {m} x {n} x {k}{' ta' if ta else ''}{' tb' if tb else ''}: {gflops:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
