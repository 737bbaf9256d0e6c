"""HF tokenizers side of the tokenizer benchmark, and a line-by-line id comparison with ours.

  python bench/tokenizer_bench.py TOKENIZER_JSON [--data ../shared/data] [--text OUT.txt] [--runs 5]
      builds the benchmark text (MovieLens titles, Amazon titles and descriptions, one per line),
      writes it to --text (for `tokenize --bench`), and prints HF's median encode throughput
      (whole text in one encode call, or with --per-line encode_batch over the lines; a fresh
      tokenizer each run, one thread).
  add --check: also encodes every line with HF and with our `target/release/tokenize` binary and
      reports the lines whose ids differ.
Needs `pip install tokenizers`. Outside the library: nothing in src/ depends on it.
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # one thread, like ours
from tokenizers import Tokenizer  # noqa: E402


def bench_lines(data):
    lines = []
    with open(f"{data}/ml-latest-small/movies.csv", newline="", encoding="utf-8") as f:
        lines += [row["title"] for row in csv.DictReader(f)]
    for name in ["amazon18-office-products", "amazon18-industrial-scientific"]:
        with open(f"{data}/{name}/{name}.item", encoding="utf-8") as f:
            header = f.readline().rstrip("\n").split("\t")
            title, desc = header.index("title:token_seq"), header.index("description:token_seq")
            for row in f:
                cols = row.rstrip("\n").split("\t")
                lines += [cols[i] for i in (title, desc) if i < len(cols) and cols[i]]
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tokenizer")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--text", default="/tmp/ilrec_tokenizer_bench.txt")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--per-line", action="store_true", help="encode_batch over the lines instead")
    args = ap.parse_args()
    lines = bench_lines(args.data)
    text = "\n".join(lines)
    with open(args.text, "w", encoding="utf-8") as f:
        f.write(text)
    mb = len(text.encode("utf-8")) / 1e6
    times, n_tokens = [], 0
    for _ in range(args.runs):
        tok = Tokenizer.from_file(args.tokenizer)
        start = time.perf_counter()
        if args.per_line:
            n_tokens = sum(len(e.ids) for e in tok.encode_batch(lines, add_special_tokens=False))
        else:
            n_tokens = len(tok.encode(text, add_special_tokens=False).ids)
        times.append(time.perf_counter() - start)
    med = statistics.median(times)
    print(f"HF tokenizers{' per line' if args.per_line else ''}: {mb:.2f} MB, {n_tokens} tokens, median of {args.runs}: {med:.3f} s = "
          f"{mb / med:.2f} MB/s (runs: {' '.join(f'{t:.3f}' for t in times)})")
    if args.check:
        check(args.tokenizer, lines)


def check(tokenizer, lines):
    tok = Tokenizer.from_file(tokenizer)
    expected = [tok.encode(line, add_special_tokens=False).ids for line in lines]
    request = "".join(json.dumps({"text": line}) + "\n" for line in lines)
    out = subprocess.run(["target/release/tokenize", "--tokenizer", tokenizer], input=request,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    bad = [i for i, (o, e) in enumerate(zip(out, expected)) if json.loads(o)["ids"] != e]
    print(f"check: {len(lines)} lines, {len(bad)} differ from HF")
    for i in bad[:5]:
        print("  line", i + 1, repr(lines[i][:200]))


if __name__ == "__main__":
    main()
