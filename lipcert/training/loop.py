"""The training loop: AdamW with a cosine schedule over a dataset, resumable, for Lipschitz nets and twins."""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict

import torch
from deel import torchlip
from torch import nn
from tqdm.auto import tqdm

from ..core.distributed import all_reduce_sum, barrier, is_main, rank_and_size
from ..core.errors import LipcertError
from ..models.pretrained import read_checkpoint
from .checkpoints import init_from_checkpoint, save_checkpoint
from .config import TrainConfig
from .evaluation import evaluate, pgd_examples, recalibrate_centering
from .losses import loss_function
from .sync_centering import synchronized_centering


def train(
    model: nn.Module,
    train_set,
    cfg: TrainConfig,
    *,
    eval_set=None,
    out: str | None = None,
    resume: bool = False,
    progress: bool = True,
    meta: dict | None = None,
    stop_after: int | None = None,
) -> dict:
    """Train a segmentation model with AdamW + cosine schedule; returns the history.

    Args:
        model: a lipcert model (LipNet / LipUNet, any parametrization).
        train_set: dataset of (image float32 (C,H,W) in [0,1], target int64 (H,W)); needs ``num_classes``
            or the model's output size, and ``ignore_index`` (default 255).
        cfg: a :class:`TrainConfig`.
        eval_set: evaluated every ``cfg.eval_every`` epochs (pixel accuracy, mIoU, certified accuracy).
        out: checkpoint path; a resumable training state is kept at ``out + ".state"``.
        resume: continue from ``out + ".state"`` when it exists.
        progress: show tqdm progress bars with loss and pixel accuracy.
        meta: extra metadata stored in the checkpoint.
        stop_after: stop (resumably, without the final checkpoint) after this epoch, e.g. to split a long run.

    Returns:
        dict with ``history`` (per-epoch loss / accuracy / evaluations), ``seconds``.

    Under ``torchrun`` (a process group is initialised) the model is wrapped in
    ``DistributedDataParallel``: every process draws the same permutation and noise, takes its contiguous
    part of each global batch of ``cfg.batch_size`` images, and scales its loss so that the averaged
    gradient is the gradient of the loss over the whole global batch (the weighted-mean denominators are
    all-reduced); BatchCentering already averages its batch statistics over the processes. Rank 0 writes
    the checkpoints; every process resumes from the same state file. The result equals a one-process run
    with the same global batch up to float rounding (tests/distributed).

    Examples:
        >>> from lipcert.data import DigitScenes
        >>> from lipcert.models import LipUNet
        >>> net = LipUNet(11, widths=[(8, 1), (16, 1)], stem=8, gain=8.0)
        >>> res = train(net, DigitScenes("train", n=4), TrainConfig(epochs=1, batch_size=4, eval_every=0),
        ...             progress=False)
        >>> len(res["history"])
        1
    """
    k = getattr(train_set, "num_classes", None)
    ignore_index = getattr(train_set, "ignore_index", 255)
    _check_setup(train_set, cfg, k)
    torch.manual_seed(cfg.seed)
    if cfg.init_from:
        init_from_checkpoint(model, cfg.init_from)
    run = _Run(model, cfg, ignore_index, math.ceil(len(train_set) / cfg.batch_size))
    state_path = None if out is None else out + ".state"
    if resume and state_path and os.path.exists(state_path):
        run.resume(state_path)
    centering = synchronized_centering(model) if run.size > 1 else contextlib.nullcontext()
    with centering:  # under DDP: global-batch centering, as in one process
        for epoch in range(run.start_epoch, cfg.epochs):
            record = run.epoch(train_set, epoch, progress)
            last = epoch + 1 == cfg.epochs
            if eval_set is not None and cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or last) and is_main():
                record["eval"] = evaluate(model, eval_set, eps=cfg.monitor_eps, ignore_index=ignore_index, limit=None)
            run.history.append(record)
            if progress and is_main():
                tqdm.write(_epoch_line(record, cfg))
            if state_path is not None:
                run.save_state(state_path, epoch + 1)
            if stop_after is not None and epoch + 1 >= stop_after:
                return {"history": run.history, "seconds": time.time() - run.t0}
        seconds = time.time() - run.t0
        if out is not None:
            _finish(model, train_set)  # every process, the same images: the running means of one process
    if out is not None:
        if is_main():
            meta = {"train_config": asdict(cfg), "history": run.history, "seconds": seconds, **(meta or {})}
            save_checkpoint(out, model, meta)
        barrier()
    return {"history": run.history, "seconds": seconds}


def _check_setup(train_set, cfg: TrainConfig, k) -> None:
    if cfg.class_weights is not None and k is not None and len(cfg.class_weights) != k:
        n_w = len(cfg.class_weights)
        raise LipcertError(f"Expected {k} `class_weights` (one per class of the dataset), but got {n_w}.")
    if len(train_set) == 0:
        raise LipcertError("The training set is empty.")
    if cfg.adversarial not in (None, "pgd"):
        raise LipcertError(f"Expected `adversarial` None or 'pgd', but got {cfg.adversarial!r}.")
    size, n, b = rank_and_size()[1], len(train_set), cfg.batch_size
    smallest = min(b, n % b or b)
    if smallest < size:  # a process with no image cannot join the gradient and centering all-reduces
        raise LipcertError(
            f"Expected every global batch to hold at least one image per process, but with {n} images, "
            f"batch_size={b} and {size} processes a batch holds only {smallest}: change batch_size or the number "
            "of processes."
        )


def _epoch_line(record: dict, cfg: TrainConfig) -> str:
    ev = record.get("eval", {})
    acc = record["train_pixel_accuracy_micro"]
    line = f"epoch {record['epoch']}: loss {record['loss']:.4f} train acc (micro) {acc:.4f}"
    if ev:
        line += f" | eval acc (micro) {ev['pixel_accuracy_micro']:.4f} mIoU (pooled) {ev['miou_pooled']:.4f}"
    if "certified_pixel_accuracy_macro" in ev:
        line += f" certified acc (macro) @{cfg.monitor_eps} {ev['certified_pixel_accuracy_macro']:.4f}"
    return line


def _finish(model: nn.Module, train_set) -> None:
    """Refresh the parametrisations' eval caches from the final weights, then recalibrate the centering."""
    model.train()
    for m in model.modules():  # keep the centering / normalisation statistics as they are
        if isinstance(m, (torchlip.BatchCentering, nn.BatchNorm2d)):
            m.eval()
    with torch.no_grad():
        model(torch.stack([train_set[i][0] for i in range(min(2, len(train_set)))]))
    recalibrate_centering(model, train_set)


def _loss_denominator(y: torch.Tensor, weight, ignore_index: int) -> torch.Tensor:
    """The denominator of the weighted-mean losses on this batch: the summed class weights of valid pixels."""
    valid = y != ignore_index
    if weight is None:
        return valid.sum().to(torch.float64)
    return weight.to(torch.float64)[y[valid]].sum()


class _Run:
    """The optimiser, schedule, history and noise stream of a training run (one per process)."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, ignore_index: int, steps_per_epoch: int) -> None:
        self.model, self.cfg, self.ignore_index, self.steps = model, cfg, ignore_index, steps_per_epoch
        self.rank, self.size = rank_and_size()
        self.net = model if self.size == 1 else nn.parallel.DistributedDataParallel(model)
        self.loss_fn = loss_function(cfg, ignore_index)
        weighted = cfg.class_weights is not None and cfg.loss != "hkr"  # HKR ignores class weights: pixel shares
        self.weight = torch.tensor(cfg.class_weights, dtype=torch.float32) if weighted else None
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        total = cfg.epochs * steps_per_epoch

        def cosine(s):
            return (cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * min(s, total) / total))) / cfg.lr

        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, cosine)
        self.history, self.start_epoch, self.t0 = [], 0, time.time()
        self.gen = torch.Generator().manual_seed(cfg.seed)

    def resume(self, state_path: str) -> None:
        state = read_checkpoint(state_path, ("model", "opt", "sched", "history", "epoch", "seconds"))
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.history, self.start_epoch = state["history"], state["epoch"]
        self.t0 -= state["seconds"]
        if "noise_rng" in state:
            self.gen.set_state(state["noise_rng"])

    def save_state(self, state_path: str, epoch: int) -> None:
        if is_main():
            state = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                     "history": self.history, "epoch": epoch, "seconds": time.time() - self.t0,
                     "noise_rng": self.gen.get_state()}  # fmt: skip
            torch.save(state, state_path)
        barrier()  # every process resumes from the same file

    def epoch(self, train_set, epoch: int, progress: bool) -> dict:
        cfg = self.cfg
        self.model.train()
        perm = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        desc = f"epoch {epoch + 1}/{cfg.epochs}"
        bar = tqdm(range(self.steps), desc=desc, disable=not progress or not is_main(), leave=False)
        totals = torch.zeros(3, dtype=torch.float64)  # loss * images, correct pixels, valid pixels (global)
        for step in bar:
            idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size].tolist()
            totals += self._step(train_set, idx, epoch, step)
            seen = min(len(train_set), (step + 1) * cfg.batch_size)
            bar.set_postfix(loss=f"{totals[0] / seen:.4f}", acc=f"{totals[1] / max(1.0, float(totals[2])):.4f}")
        return {
            "epoch": epoch + 1,
            "loss": float(totals[0]) / len(train_set),
            "train_pixel_accuracy_micro": float(totals[1]) / max(1.0, float(totals[2])),
            "lr": self.sched.get_last_lr()[0],
            "seconds": time.time() - self.t0,
        }

    def _step(self, train_set, idx: list, epoch: int, step: int) -> torch.Tensor:
        """One optimiser step on the global batch ``idx``; returns its (loss * images, correct, valid)."""
        cfg = self.cfg
        lo, hi = self.rank * len(idx) // self.size, (self.rank + 1) * len(idx) // self.size
        items = [train_set[i] for i in idx]  # every process draws the noise of the whole batch (same stream)
        x = torch.stack([a for a, _ in items])
        y = torch.stack([b for _, b in items])
        if cfg.noise_sigma > 0:
            x = x + cfg.noise_sigma * torch.randn(x.shape, generator=self.gen)
        x, y = x[lo:hi], y[lo:hi]
        if cfg.adversarial == "pgd":  # adversarial-only batches
            x = pgd_examples(self.model, x, y, cfg.adv_eps, cfg.adv_steps, cfg.adv_norm, self.ignore_index)
        logits = self.net(x)
        if cfg.loss in ("margin_ce", "margin_hinge"):
            ramp = 1.0 if cfg.margin_warmup <= 0 else min(1.0, (epoch + step / self.steps) / cfg.margin_warmup)
            loss = self.loss_fn(logits, y, cfg.margin * ramp)
        else:
            loss = self.loss_fn(logits, y)
        share = torch.ones((), dtype=torch.float64)
        if self.size > 1:  # this process's share of the global weighted-mean denominator
            local = _loss_denominator(y, self.weight, self.ignore_index)
            share = local / all_reduce_sum(local.clone()).clamp_min(1e-300)
        global_loss = all_reduce_sum((loss.detach().double() * share).reshape(1))[0]
        if not bool(torch.isfinite(global_loss)):
            raise LipcertError(
                f"The training loss became {float(global_loss)} at epoch {epoch + 1}, step {step + 1}: "
                "training stopped (lower the learning rate, or check tau and the class weights)."
            )
        self.opt.zero_grad(set_to_none=True)
        (loss * (share * self.size).to(loss.dtype)).backward()  # DDP averages: the mean of shares * size is 1
        self.opt.step()
        self.sched.step()
        with torch.no_grad():
            valid = y != self.ignore_index
            counts = torch.tensor([float(((logits.argmax(1) == y) & valid).sum()), float(valid.sum())],
                                  dtype=torch.float64)  # fmt: skip
        counts = all_reduce_sum(counts)
        return torch.stack([global_loss * len(idx), counts[0], counts[1]])
