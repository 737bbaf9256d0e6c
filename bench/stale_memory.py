#!/usr/bin/env python3
# How fast does this machine read and write a buffer that has not been touched for a while?
#
#   python bench/stale_memory.py            (needs numpy; ~1 minute; stop other work first)
#
# Why it is here: in the full fine-tuning step, SwiGLU's backward took ~3x as long as the same
# call in the LoRA step, with its inputs equally warm and no page fault counted by the guest
# (BENCHMARKS.md, "The ratio over 45 + 45 pairs"). This probe separates the machine from our
# code: two 6 MiB buffers (each the size of SwiGLU's two gradients together at B 4, T 128)
# are left alone for a pause (the core kept busy on a few KB meanwhile, so that it does not
# sleep), then one is read twice and the other written twice; once in ordinary 4 KiB pages and
# once in a region madvise'd for transparent huge pages (2 MiB). On a machine where the first
# touch after a pause is as fast as the second, the columns read alike. Prints GB/s per access.
import mmap
import time

import numpy as np

MIB = 1 << 20
FLOATS = 6 * MIB // 4


def buffer(huge):
    """A 6 MiB float32 view, 2 MiB-aligned, in a fresh anonymous mapping, already touched."""
    region = mmap.mmap(-1, 16 * MIB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if huge:
        region.madvise(mmap.MADV_HUGEPAGE)  # before the first touch, or it is not honoured
    whole = np.frombuffer(region, dtype=np.float32)
    start = (-whole.ctypes.data % (2 * MIB)) // 4
    view = whole[start : start + FLOATS]
    view.fill(1.0)
    return view, region


def busy(seconds):
    """Keeps the core working (on 4 KB, no memory traffic) for `seconds`: a pause that does not
    let the core sleep, so the clock it runs at is not what the probe measures."""
    x = np.ones(1000, dtype=np.float32)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        x *= 1.0000001


def gb_per_s(access):
    t0 = time.perf_counter()
    access()
    return FLOATS * 4 / 1e9 / (time.perf_counter() - t0)


def huge_kib():
    with open("/proc/self/smaps_rollup") as f:
        return next((line.split()[1] for line in f if line.startswith("AnonHugePages")), "?")


for huge in (False, True):
    a, keep_a = buffer(huge)
    b, keep_b = buffer(huge)
    print(f"{'2 MiB pages' if huge else '4 KiB pages'} (process AnonHugePages {huge_kib()} kB)")
    for pause in (0.0, 0.2, 1.0, 3.0):
        rows = []
        for _ in range(4):
            busy(pause)
            rows.append(
                (
                    gb_per_s(lambda: a.sum()),
                    gb_per_s(lambda: a.sum()),
                    gb_per_s(lambda: b.fill(2.0)),
                    gb_per_s(lambda: b.fill(3.0)),
                )
            )
        med = np.median(np.array(rows), axis=0)
        print(
            f"  pause {pause:.1f} s: read a {med[0]:5.1f}, again {med[1]:5.1f} | "
            f"write b {med[2]:5.1f}, again {med[3]:5.1f} GB/s (median of 4)"
        )
