"""The training loop: AdamW with a cosine schedule over a dataset, resumable, for Lipschitz nets and twins."""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict

import torch
from deel import torchlip
from torch import nn
from tqdm.auto import tqdm

from ..core.errors import LipcertError
from ..models.pretrained import read_checkpoint
from .checkpoints import init_from_checkpoint, save_checkpoint
from .config import TrainConfig
from .evaluation import evaluate, pgd_examples, recalibrate_centering
from .losses import loss_function


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

    Examples:
        >>> from lipcert.data import DigitScenes
        >>> from lipcert.models import LipUNet
        >>> net = LipUNet(11, widths=[(8, 1), (16, 1)], stem=8, gain=8.0)
        >>> res = train(net, DigitScenes("train", n=4), TrainConfig(epochs=1, batch_size=4, eval_every=0),
        ...             progress=False)
        >>> len(res["history"])
        1
    """
    torch.manual_seed(cfg.seed)
    ignore_index = getattr(train_set, "ignore_index", 255)
    k = getattr(train_set, "num_classes", None)
    if cfg.class_weights is not None and k is not None and len(cfg.class_weights) != k:
        n_w = len(cfg.class_weights)
        raise LipcertError(f"Expected {k} `class_weights` (one per class of the dataset), but got {n_w}.")
    if len(train_set) == 0:
        raise LipcertError("The training set is empty.")
    if cfg.adversarial not in (None, "pgd"):
        raise LipcertError(f"Expected `adversarial` None or 'pgd', but got {cfg.adversarial!r}.")
    if cfg.init_from:
        init_from_checkpoint(model, cfg.init_from)
    loss_fn = loss_function(cfg, ignore_index)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * min(s, total) / total))) / cfg.lr,
    )
    history, start_epoch, t0 = [], 0, time.time()
    state_path = None if out is None else out + ".state"
    if resume and state_path and os.path.exists(state_path):
        state = read_checkpoint(state_path, ("model", "opt", "sched", "history", "epoch", "seconds"))
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        history, start_epoch = state["history"], state["epoch"]
        t0 -= state["seconds"]
    gen = torch.Generator().manual_seed(cfg.seed)
    if start_epoch and "noise_rng" in state:
        gen.set_state(state["noise_rng"])
    if resume and state_path and os.path.exists(state_path) and "noise_rng" in state:
        gen.set_state(state["noise_rng"])
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        perm = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        run_loss = run_correct = run_valid = 0.0
        for step in bar:
            idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size].tolist()
            items = [train_set[i] for i in idx]
            x = torch.stack([a for a, _ in items])
            y = torch.stack([b for _, b in items])
            if cfg.noise_sigma > 0:
                x = x + cfg.noise_sigma * torch.randn(x.shape, generator=gen)
            if cfg.adversarial == "pgd":  # adversarial-only batches
                x = pgd_examples(model, x, y, cfg.adv_eps, cfg.adv_steps, cfg.adv_norm, ignore_index)
            logits = model(x)
            if cfg.loss == "margin_ce":
                ramp = 1.0 if cfg.margin_warmup <= 0 else min(1.0, (epoch + step / steps_per_epoch) / cfg.margin_warmup)
                loss = loss_fn(logits, y, cfg.margin * ramp)
            else:
                loss = loss_fn(logits, y)
            if not bool(torch.isfinite(loss)):
                raise LipcertError(
                    f"The training loss became {float(loss.detach())} at epoch {epoch + 1}, step {step + 1}: "
                    "training stopped (lower the learning rate, or check tau and the class weights)."
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                valid = y != ignore_index
                run_correct += float(((logits.argmax(1) == y) & valid).sum())
                run_valid += float(valid.sum())
                run_loss += float(loss) * len(idx)
            bar.set_postfix(
                loss=f"{run_loss / max(1, (step + 1) * cfg.batch_size):.4f}",
                acc=f"{run_correct / max(1.0, run_valid):.4f}",
            )
        record = {
            "epoch": epoch + 1,
            "loss": run_loss / len(train_set),
            "train_pixel_accuracy_micro": run_correct / max(1.0, run_valid),
            "lr": sched.get_last_lr()[0],
            "seconds": time.time() - t0,
        }
        if eval_set is not None and cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            record["eval"] = evaluate(model, eval_set, eps=cfg.monitor_eps, ignore_index=ignore_index, limit=None)
        history.append(record)
        if progress:
            ev = record.get("eval", {})
            tqdm.write(
                f"epoch {epoch + 1}: loss {record['loss']:.4f} train acc (micro) "
                f"{record['train_pixel_accuracy_micro']:.4f}"
                + (
                    f" | eval acc (micro) {ev['pixel_accuracy_micro']:.4f} mIoU (pooled) {ev['miou_pooled']:.4f}"
                    if ev
                    else ""
                )
                + (
                    f" certified acc (macro) @{cfg.monitor_eps} {ev['certified_pixel_accuracy_macro']:.4f}"
                    if "certified_pixel_accuracy_macro" in ev
                    else ""
                )
            )
        if out is not None:
            torch.save(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "history": history,
                    "epoch": epoch + 1,
                    "seconds": time.time() - t0,
                    "noise_rng": gen.get_state(),
                },
                state_path,
            )
        if stop_after is not None and epoch + 1 >= stop_after:
            return {"history": history, "seconds": time.time() - t0}
    seconds = time.time() - t0
    if out is not None:
        model.train()
        for m in model.modules():  # keep the centering / normalisation statistics as they are
            if isinstance(m, (torchlip.BatchCentering, nn.BatchNorm2d)):
                m.eval()
        with torch.no_grad():  # refresh eval-mode caches of parametrisations from the final weights
            model(torch.stack([train_set[i][0] for i in range(min(2, len(train_set)))]))
        recalibrate_centering(model, train_set)
        save_checkpoint(
            out, model, {"train_config": asdict(cfg), "history": history, "seconds": seconds, **(meta or {})}
        )
    return {"history": history, "seconds": seconds}
