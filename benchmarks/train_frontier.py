"""Train the certified-training settings of the digits frontier, one after the other (resumable).

Each setting is the ``digits-lipunet-tau16`` recipe (the first shipped model) with other loss settings
and, for the last two, a wider body (the widest is what ``digits-lipunet`` now ships); checkpoints go to
``OUT/<name>.pt`` with the training log beside them. Evaluate them with ``frontier_eval.py``.

    python benchmarks/train_frontier.py --out runs/frontier --epochs 30 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from lipcert.data import DigitScenes
from lipcert.models import build_model
from lipcert.training import train
from lipcert.training.recipes import get_recipe

SETTINGS = {
    "tau16": dict(loss="tau_ce", tau=16.0),
    "mce-tau4-k1.1": dict(loss="margin_ce", tau=4.0, margin=1.13, margin_warmup=5),
    "mce-tau4-k2.8": dict(loss="margin_ce", tau=4.0, margin=2.83, margin_warmup=5),
    "mce-tau8-k2.0": dict(loss="margin_ce", tau=8.0, margin=2.0, margin_warmup=5),
    "tau4": dict(loss="tau_ce", tau=4.0),
    "hinge-tau8-k2.0-q25": dict(loss="margin_hinge", tau=8.0, margin=2.0, margin_warmup=5, hinge_quantile=0.25),
    "mce-tau4-k2.0-w03": dict(loss="margin_ce", tau=4.0, margin=2.0, margin_warmup=5, class_weights=[0.3] + [1.0] * 10),
    # the hinge on correctly classified pixels only (what the certificate's attacker flips), lighter
    "hinge-correct-tau8-k2.0-w03": dict(
        loss="margin_hinge",
        tau=8.0,
        margin=2.0,
        margin_warmup=5,
        hinge_quantile=0.25,
        hinge_weight=0.3,
        hinge_correct_only=True,
    ),  # fmt: skip
    # architecture: the best loss so far on a 1.5x wider body (about 2.2x the training time)
    "wide-mce-tau8-k2.0": dict(loss="margin_ce", tau=8.0, margin=2.0, margin_warmup=5),
    # twice the width (about 3x the training time: resumable over sessions)
    "wider-mce-tau8-k2.0": dict(loss="margin_ce", tau=8.0, margin=2.0, margin_warmup=5),
    # depth at the first body's width: three blocks per stage (about 1.4x the training time)
    "deep-mce-tau8-k2.0": dict(loss="margin_ce", tau=8.0, margin=2.0, margin_warmup=5),
}
# model fields that differ from the recipe's, per setting
MODEL_OVERRIDES = {
    "wide-mce-tau8-k2.0": dict(widths=[[48, 2], [96, 2], [192, 2]], stem=48),
    "wider-mce-tau8-k2.0": dict(widths=[[64, 2], [128, 2], [256, 2]], stem=64),
    "deep-mce-tau8-k2.0": dict(widths=[[32, 3], [64, 3], [128, 3]], stem=32),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/frontier")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", default=None, help="names of the settings to train")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    for name, options in SETTINGS.items():
        if args.only and name not in args.only:
            continue
        path = os.path.join(args.out, f"{name}.pt")
        if os.path.exists(path):
            continue
        recipe = get_recipe("digits-lipunet-tau16", epochs=args.epochs, eval_every=0, **options)
        data = recipe["data"]
        torch.manual_seed(recipe["train"].seed)
        model = build_model({**recipe["model"], **MODEL_OVERRIDES.get(name, {})})
        train_set = DigitScenes("train", n=data["n_train"], size=data["size"], seed=data["seed"])
        t0 = time.time()
        res = train(
            model,
            train_set,
            recipe["train"],
            out=path,
            resume=True,
            progress=False,
            meta={"setting": name, "options": options, "model": MODEL_OVERRIDES.get(name, {})},
        )
        with open(os.path.join(args.out, f"{name}.log.json"), "w") as f:
            json.dump({"setting": name, "options": options, "seconds": time.time() - t0, **res}, f, default=str)
        print(name, "done", round(time.time() - t0), "s", flush=True)


if __name__ == "__main__":
    main()
