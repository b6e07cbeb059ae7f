"""Run by torch.distributed.run (or plainly) from test_torchrun.py: a tiny training run, rank 0 saves it."""

import json
import sys

import torch

from lipcert.core.distributed import init_from_env, is_main
from lipcert.data import DigitScenes
from lipcert.models import LipUNet
from lipcert.training import TrainConfig, train


def run(out: str, loss: str) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = LipUNet(11, widths=[(8, 1), (16, 1)], stem=8, gain=8.0)
    cfg = TrainConfig(epochs=2, batch_size=3, eval_every=0, loss=loss, class_weights=[0.3] + [1.0] * 10,
                      noise_sigma=0.1, margin=0.5, margin_warmup=1, lr=3e-3)  # fmt: skip
    return train(net, DigitScenes("train", n=8, size=32), cfg, progress=False, out=out)


if __name__ == "__main__":
    distributed = init_from_env()
    res = run(sys.argv[1], sys.argv[2])
    if is_main():
        with open(sys.argv[1] + ".json", "w") as f:
            json.dump({"distributed": distributed, "losses": [h["loss"] for h in res["history"]]}, f)
