"""Reference token ids from HF `tokenizers` for the SentencePiece-style tokenizer tests.

Run from the crate root, in an environment with `tokenizers` (e.g. a venv under .cache/):
    python scripts/make_sentencepiece_cases.py ../shared/fixtures ../shared/data tests/data

Writes two files, both built on the Llama 2-style fixture `tokenizers/llama2/tokenizer.json`:
  llama2_titles.jsonl        item titles of the real data sets, in the fixture `cases.jsonl` form
                             {"text", "added_tokens", "ids", "decoded"}: every title with a
                             non-ASCII character and an even sample of the others (distinct titles)
  sentencepiece_variants.jsonl  one line per variant of that tokenizer.json: the components that
                             replace the file's own ("normalizer", "pre_tokenizer", "decoder") and
                             "cases" [{"text", "ids", "decoded"}] computed with them. The variants
                             cover the Metaspace pre-tokenizer and decoder (prepend_scheme always,
                             first, never, legacy add_prefix_space, split on/off) and the Unicode,
                             Strip, Lowercase and regex Replace normalizers.
"""
import csv
import json
import os
import sys

from tokenizers import Tokenizer

ASCII_SAMPLE = 400  # ASCII titles kept (evenly spaced), besides every non-ASCII one

TEXTS = [
    "", "Hello world!", "Hello world! 12345", "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\n\n\nand\r\nwindows", "Don't you'll we've I'm they're she's it'd",
    "café naïve résumé Ünïcödé", "日本語のテキストと中文文本", "emoji 🙂🚀 and flags 🇫🇷",
    "The user has interacted with items Toy Story (1995), Jumanji (1995) in chronological order.",
    "<s>Hello world</s>", "Hello <s> world", "<s> after a special token", "<unk>", "  x", "a  b   c",
    "\ufb01le \uff26\uff55\uff4c\uff4c \u2460\u2461 \u00bd \u337f", "ΣΑΣ İstanbul ǅ", "한국어 e\u0301 A\u030a",
    "x\u00a0y\u3000z", "    indented code:\n        return x + 1",
]

SEQ_DECODER = {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
    {"type": "ByteFallback"}, {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
SP_NORMALIZERS = [{"type": "Prepend", "prepend": "\u2581"},
                  {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]


def metaspace(**kw):
    return dict({"type": "Metaspace", "replacement": "\u2581"}, **kw)


VARIANTS = {
    "metaspace_first_nosplit": (None, metaspace(prepend_scheme="first", split=False),
                                metaspace(prepend_scheme="first", split=False)),
    "metaspace_always_split": (None, metaspace(prepend_scheme="always", split=True),
                               metaspace(prepend_scheme="always", split=True)),
    "metaspace_never_split": (None, metaspace(prepend_scheme="never", split=True),
                              {"type": "Sequence", "decoders": [metaspace(prepend_scheme="never"),
                                                                {"type": "ByteFallback"}, {"type": "Fuse"}]}),
    "metaspace_legacy_add_prefix_space": (None, metaspace(add_prefix_space=True),
                                          metaspace(add_prefix_space=True)),
    "nfkc_lowercase_strip_regex": ({"type": "Sequence", "normalizers": [
        {"type": "NFKC"}, {"type": "Lowercase"},
        {"type": "Strip", "strip_left": True, "strip_right": True},
        {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}] + SP_NORMALIZERS},
        None, SEQ_DECODER),
    "nfd_whitespace_regex": ({"type": "Sequence", "normalizers": [
        {"type": "NFD"}, {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "}] + SP_NORMALIZERS},
        None, SEQ_DECODER),
    "nfkd": ({"type": "Sequence", "normalizers": [{"type": "NFKD"}] + SP_NORMALIZERS}, None, SEQ_DECODER),
}


def titles(data_dir):
    out = []
    with open(os.path.join(data_dir, "ml-latest-small", "movies.csv"), newline="") as f:
        out += [row["title"] for row in csv.DictReader(f)]
    for name in ["amazon18-office-products", "amazon18-industrial-scientific"]:
        with open(os.path.join(data_dir, name, f"{name}.item")) as f:
            next(f)  # typed header
            out += [line.rstrip("\n").split("\t")[1] for line in f]
    distinct = sorted(set(t for t in out if t))
    non_ascii = [t for t in distinct if not t.isascii()]
    ascii_ = [t for t in distinct if t.isascii()]
    step = max(1, len(ascii_) // ASCII_SAMPLE)
    return non_ascii + ascii_[::step][:ASCII_SAMPLE], len(distinct)


def case(tok, text):
    ids = tok.encode(text, add_special_tokens=False).ids
    return {"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)}


def main():
    fixtures, data_dir, out_dir = sys.argv[1:4]
    path = os.path.join(fixtures, "tokenizers", "llama2", "tokenizer.json")
    base = json.load(open(path))
    tok = Tokenizer.from_file(path)
    chosen, n_distinct = titles(data_dir)
    with open(os.path.join(out_dir, "llama2_titles.jsonl"), "w") as f:
        for text in chosen:
            f.write(json.dumps(dict(case(tok, text), added_tokens=[]), ensure_ascii=False) + "\n")
    with open(os.path.join(out_dir, "sentencepiece_variants.jsonl"), "w") as f:
        for name, (normalizer, pre, decoder) in VARIANTS.items():
            spec = dict(base, normalizer=normalizer, pre_tokenizer=pre, decoder=decoder)
            variant = Tokenizer.from_str(json.dumps(spec))
            line = {"variant": name, "normalizer": normalizer, "pre_tokenizer": pre, "decoder": decoder,
                    "cases": [case(variant, t) for t in TEXTS]}
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    print(f"{len(chosen)} of {n_distinct} distinct titles; {len(VARIANTS)} variants x {len(TEXTS)} texts")


if __name__ == "__main__":
    main()
