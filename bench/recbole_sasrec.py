"""RecBole's SASRec on exactly our ml-latest-small split (issue 18), for BENCHMARKS.md.

Commands (from the repository root; numbers in BENCHMARKS.md, "SASRec: ours vs RecBole"):

    python3 -m venv /work/venv && /work/venv/bin/pip install torch recbole "setuptools<70"
    cargo run --release --bin dataset -- data/ml-latest-small \
        --export-atomic /tmp/recbole-data/ml-latest-small
    /work/venv/bin/python bench/recbole_sasrec.py --data /tmp/recbole-data \
        --dataset ml-latest-small --seed 0 --select exclude-history --out /tmp/recbole-s0.json

`dataset --export-atomic` writes our pre-processed interactions (5-core, deduplicated) with each
item's position in its user's sequence as the timestamp, so RecBole's time-ordered
leave-one-out (`LS: valid_and_test`, `order: TO`) is our split. RecBole's own filters are off.

What this script adds to a plain RecBole run, and why:
- numpy-2 and torch >= 2.6 shims (RecBole 1.2.1 uses `np.float_` & co. and `torch.load` of
  pickled configs), before RecBole is imported; autograd anomaly mode, which importing RecBole's
  models switches on, switched off again (it changes no number, and cost half of every step);
- a split check: RecBole's counts must be ours (+1 for its padding id), and every validation and
  test row (user, target, the last 50 items before it) must be what our order gives for that
  user (the rows of the .inter file in file order); a sha256 of the sorted (user, test item)
  pairs is printed; the script stops if anything differs;
- the `exclude-history` protocol: RecBole's full-sort evaluation of sequential models ranks every
  item (no history mask for `ModelType.SEQUENTIAL`); ours with `--exclude-history` takes the
  user's whole earlier sequence out of the ranking (training items for validation, training +
  validation items for test), as RecBole does for its general models. `--select` picks the
  protocol used for early stopping; the test metrics are reported under both protocols.

Nothing of RecBole is copied here: it is imported and run.
"""

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time

import numpy as np

# numpy 2 removed these aliases; RecBole 1.2.1 still uses them.
for _name, _value in [
    ("float_", np.float64),
    ("int_", np.int64),
    ("bool8", np.bool_),
    ("unicode_", np.str_),
    ("complex_", np.complex128),
    ("float", float),
    ("int", int),
    ("bool", bool),
    ("object", object),
]:
    if not hasattr(np, _name):
        setattr(np, _name, _value)

import torch  # noqa: E402

# torch >= 2.6 loads weights only by default; RecBole's own checkpoints pickle its config.
_torch_load = torch.load


def _load_trusted(*args, **kwargs):
    kwargs.setdefault("weights_only", False)
    return _torch_load(*args, **kwargs)


torch.load = _load_trusted

import recbole  # noqa: E402
from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.model.sequential_recommender import SASRec  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402
from recbole.utils import init_logger, init_seed  # noqa: E402

# Importing RecBole's sequential models runs `torch.autograd.set_detect_anomaly(True)` (in its
# SINE module), for every model. Anomaly mode only checks each gradient for NaN (and keeps
# traces); it changes no number, but here it was half of every training step (4.3 s instead of
# 8.3 s for a 2048 x 50 batch on this CPU). Off, then.
torch.autograd.set_detect_anomaly(False)

PROTOCOLS = ("all-items", "exclude-history")
MAX_LEN = 50


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="folder holding DATASET/DATASET.inter")
    p.add_argument("--dataset", default="ml-latest-small")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--select", choices=PROTOCOLS, default="exclude-history",
                   help="ranking protocol of the validation metric that early stopping reads")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="write the result JSON here too")
    p.add_argument("--evaluate", metavar="CHECKPOINT",
                   help="no training: evaluate this RecBole checkpoint (a cut-off run's best "
                        "model, which RecBole saves at every validation improvement) on "
                        "validation and test under both protocols")
    return p.parse_args()


def recbole_config(args, checkpoint_dir):
    """The issue's SASRec (RecBole's defaults, written out) on our split, filters off."""
    return {
        # Data: our export, read as is.
        "data_path": args.data,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "rm_dup_inter": None,
        "val_interval": None,
        "normalize_all": False,
        "MAX_ITEM_LIST_LENGTH": MAX_LEN,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO",
                      "group_by": "user", "mode": "full"},
        # Model: RecBole's SASRec defaults.
        "n_layers": 2, "n_heads": 2, "hidden_size": 64, "inner_size": 256,
        "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "hidden_act": "gelu",
        "layer_norm_eps": 1e-12, "initializer_range": 0.02, "loss_type": "CE",
        "train_neg_sample_args": None,
        # Training: RecBole's defaults, early stopping on validation NDCG@10.
        "epochs": args.epochs, "train_batch_size": 2048, "eval_batch_size": 4096,
        "learner": "adam", "learning_rate": 0.001, "weight_decay": 0.0,
        "stopping_step": 10, "eval_step": 1,
        "metrics": ["Hit", "NDCG"], "topk": [5, 10], "valid_metric": "NDCG@10",
        # Machine.
        "seed": args.seed, "reproducibility": True, "use_gpu": False, "device": "cpu",
        "checkpoint_dir": checkpoint_dir, "show_progress": False, "state": "INFO",
        "worker": 0,
    }


def read_sequences(path):
    """{user token: [item tokens]} in file order (= our order: see `dataset --export-atomic`)."""
    seqs = {}
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        u, i = header.index("user_id:token"), header.index("item_id:token")
        for line in f:
            fields = line.rstrip("\n").split("\t")
            seqs.setdefault(fields[u], []).append(fields[i])
    return seqs


def eval_rows(split_dataset):
    """(user token, target token, history tokens) of each row of a validation or test set."""
    ds = split_dataset
    users = ds.inter_feat[ds.uid_field].numpy()
    targets = ds.inter_feat[ds.iid_field].numpy()
    lists = ds.inter_feat[ds.iid_field + ds.config["LIST_SUFFIX"]].numpy()
    lengths = ds.inter_feat[ds.config["ITEM_LIST_LENGTH_FIELD"]].numpy()
    rows = []
    for u, t, items, n in zip(users, targets, lists, lengths):
        hist = [ds.id2token(ds.iid_field, int(x)) for x in items[:n]]
        rows.append((ds.id2token(ds.uid_field, int(u)), ds.id2token(ds.iid_field, int(t)), hist))
    return rows


def loaded_counts(dataset):
    """RecBole's counts of the loaded data set (before its sequential data augmentation turns
    every interaction after a user's first into a prefix row), less its padding ids."""
    return {"users": dataset.user_num - 1, "items": dataset.item_num - 1,
            "interactions": dataset.inter_num}


def check_split(seqs, counts, train, valid, test):
    """Counts and every validation / test row against our order; the (user, test) checksum."""
    n_users, n_inter = len(seqs), sum(len(s) for s in seqs.values())
    n_items = len({i for s in seqs.values() for i in s})
    got = dict(counts, train_rows=len(train.inter_feat), valid_rows=len(valid.inter_feat),
               test_rows=len(test.inter_feat))
    want = {"users": n_users, "items": n_items, "interactions": n_inter,
            "train_rows": n_inter - 3 * n_users, "valid_rows": n_users, "test_rows": n_users}
    problems = [f"{k}: RecBole {got[k]}, ours {want[k]}" for k in want if got[k] != want[k]]
    for name, split, back in [("valid", valid, 2), ("test", test, 1)]:
        for user, target, hist in eval_rows(split):
            seq = seqs[user]
            t = len(seq) - back
            if target != seq[t] or hist != seq[max(0, t - MAX_LEN):t]:
                problems.append(f"{name} row of user {user} differs")
    pairs = sorted(f"{u}\t{t}" for u, t, _ in eval_rows(test))
    ours = sorted(f"{u}\t{s[-1]}" for u, s in seqs.items())
    digest = hashlib.sha256("\n".join(pairs).encode()).hexdigest()
    if digest != hashlib.sha256("\n".join(ours).encode()).hexdigest():
        problems.append("the (user, test item) pairs differ")
    return {"counts": got, "test_pairs_sha256": digest, "passed": not problems,
            "problems": problems[:20]}


class HistoryMask:
    """Takes each row's earlier items out of the ranking while `on` (the exclude-history protocol).

    A validation or test row of user u with target t excludes every item of u's sequence before
    t (not only the 50 the model reads): RecBole's general-model protocol, and ours."""

    def __init__(self, seqs, dataset):
        tok = dataset.token2id
        self.seqs = {int(tok(dataset.uid_field, u)): [int(x) for x in tok(dataset.iid_field, s)]
                     for u, s in seqs.items()}
        self.uid, self.iid = dataset.uid_field, dataset.iid_field
        self.on = False

    def apply(self, interaction, scores):
        if not self.on:
            return
        users = interaction[self.uid].tolist()
        targets = interaction[self.iid].tolist()
        for row, (u, t) in enumerate(zip(users, targets)):
            seq = self.seqs[u]
            earlier = seq[:seq.index(t)]
            if earlier:
                scores[row, torch.tensor(earlier)] = -np.inf


class MaskedTrainer(Trainer):
    """RecBole's Trainer whose full-sort scores go through a HistoryMask; records each epoch's
    validation metrics."""

    def __init__(self, config, model, mask):
        super().__init__(config, model)
        self.mask = mask
        self.valid_log = []

    def _full_sort_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        self.mask.apply(interaction, scores)
        return interaction, scores, positive_u, positive_i

    def _valid_epoch(self, valid_data, show_progress=False):
        score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self.valid_log.append({k: float(v) for k, v in result.items()})
        return score, result


def metrics(result):
    return {k: round(float(v), 6) for k, v in result.items()}


def evaluate_checkpoint(args, trainer, mask, split, valid_data, test_data):
    """Validation and test metrics of a saved checkpoint under both protocols."""
    checkpoint = torch.load(args.evaluate, map_location="cpu")
    report = {"system": "recbole", "recbole": recbole.__version__, "dataset": args.dataset,
              "seed": args.seed, "split_check": split, "checkpoint": args.evaluate,
              "checkpoint_epoch": checkpoint["epoch"] + 1,  # 1-based (RecBole logs it 0-based)
              "checkpoint_best_valid_score": float(checkpoint["best_valid_score"])}
    for name, data in [("valid", valid_data), ("test", test_data)]:
        report[name] = {}
        for protocol in PROTOCOLS:
            mask.on = protocol == "exclude-history"
            result = trainer.evaluate(data, load_best_model=True, model_file=args.evaluate)
            report[name][protocol] = metrics(result)
    line = json.dumps(report)
    print(line)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(line + "\n")


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    inter_path = os.path.join(args.data, args.dataset, f"{args.dataset}.inter")
    seqs = read_sequences(inter_path)
    checkpoints = tempfile.mkdtemp(prefix="recbole-ckpt-")
    config = Config(model="SASRec", dataset=args.dataset,
                    config_dict=recbole_config(args, checkpoints))
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    print(dataset, file=sys.stderr)
    counts = loaded_counts(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    split = check_split(seqs, counts, train_data._dataset, valid_data._dataset, test_data._dataset)
    print(json.dumps(split), file=sys.stderr)
    if not split["passed"]:
        sys.exit("split check failed: " + "; ".join(split["problems"]))
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = SASRec(config, train_data._dataset).to(config["device"])
    mask = HistoryMask(seqs, dataset)
    trainer = MaskedTrainer(config, model, mask)
    if args.evaluate:
        return evaluate_checkpoint(args, trainer, mask, split, valid_data, test_data)
    mask.on = args.select == "exclude-history"
    start = time.time()
    best_valid_score, best_valid = trainer.fit(train_data, valid_data, saved=True,
                                               show_progress=False)
    seconds = time.time() - start
    test = {}
    for protocol in PROTOCOLS:
        mask.on = protocol == "exclude-history"
        test[protocol] = metrics(trainer.evaluate(test_data, load_best_model=True))
    epochs = len(trainer.train_loss_dict)
    report = {
        "system": "recbole", "recbole": recbole.__version__, "torch": torch.__version__,
        "numpy": np.__version__, "dataset": args.dataset, "seed": args.seed,
        "select": args.select, "split_check": split, "epochs": epochs,
        "best_epoch": epochs - trainer.cur_step,  # 1-based
        "valid": metrics(best_valid), "test": test, "seconds": round(seconds, 1),
        "valid_log_ndcg@10": [round(v["ndcg@10"], 4) for v in trainer.valid_log],
    }
    line = json.dumps(report)
    print(line)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
