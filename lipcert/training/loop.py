"""Training loops: temperature-scaled CE or HKR for Lipschitz nets, noise augmentation for twins."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from deel import torchlip
from torch import nn
from tqdm.auto import tqdm

from ..attacks import project
from ..certify import certify_logits
from ..core.checks import check_choice, check_positive
from ..core.errors import LipcertError
from ..core.model_state import eval_mode
from ..lipschitz import export_plain, lipschitz_bound
from ..models.pretrained import read_checkpoint
from ..worst_case.confusion import confusion_matrix, iou_from_confusion, pixel_accuracy_from_confusion

LOSSES = ("tau_ce", "hkr", "margin_ce")


@dataclass
class TrainConfig:
    """Settings of :func:`train` (all recorded in the checkpoint).

    Attributes:
        epochs, batch_size: schedule length and batch size.
        lr, weight_decay, betas: AdamW settings; the learning rate follows a cosine to ``lr_min``.
        loss: ``"tau_ce"`` (deel-torchlip TauCrossEntropyLoss, CE(tau * z) / tau) or ``"hkr"``
            (deel-torchlip SoftHKRMulticlassLoss on the valid pixels).
        tau: temperature of tau_ce and margin_ce (1 = plain cross-entropy).
        margin: kappa of ``"margin_ce"`` in logit units: ``CE(tau * (z - kappa * onehot(y))) / tau``, the
            true-class logit lowered by kappa, so the loss keeps pushing until the margin exceeds kappa
            (``sqrt(2) * L * eps_train`` protects a pixel at radius eps_train).
        margin_warmup: epochs over which kappa grows linearly from 0 to ``margin`` (0: from the start).
        class_weights: per-class loss weights (e.g. 0.1 for a dominant background), or None.
        noise_sigma: std of Gaussian noise added in [0,1] input space (randomized-smoothing twins).
        monitor_eps: radius (l2, [0,1] pixels) of the certified accuracy shown during evaluation.
        eval_every: evaluate every this many epochs (0 = never).
        seed: seeds the model initialisation order, the data order and the noise.
        adversarial: ``"pgd"`` for PGD adversarial training (unconstrained models): every batch is replaced
            by PGD adversarial examples (cross-entropy, ``adv_steps`` steps of size 2.5 eps / steps, radius
            ``adv_eps`` in ``adv_norm``, no random start), computed with the model in eval mode.
        init_from: a checkpoint whose matching weights initialise the model before training (PIR-AT:
            start from a robust model's backbone; layers whose shapes differ, e.g. the head, are kept).
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    lr_min: float = 1e-6
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    loss: str = "tau_ce"
    tau: float = 8.0
    class_weights: list[float] | None = None
    noise_sigma: float = 0.0
    monitor_eps: float = 0.25
    eval_every: int = 5
    seed: int = 0
    adversarial: str | None = None
    adv_eps: float = 0.5
    adv_steps: int = 3
    adv_norm: str = "l2"
    init_from: str | None = None
    margin: float = 0.0
    margin_warmup: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            check_positive(getattr(self, name), name, integer=True)
        for name in ("eval_every", "adv_steps", "margin_warmup", "seed"):
            check_positive(getattr(self, name), name, integer=True, allow_zero=True)
        for name in ("lr", "tau"):
            check_positive(getattr(self, name), name)
        for name in ("lr_min", "weight_decay", "noise_sigma", "margin", "adv_eps", "monitor_eps"):
            check_positive(getattr(self, name), name, allow_zero=True)
        check_choice(self.loss, LOSSES, "loss")
        if self.class_weights is not None:
            w = list(self.class_weights)
            if not w or not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in w):
                raise LipcertError(f"Expected `class_weights` finite and >= 0, but got {self.class_weights!r}.")


def _loss_fn(cfg: TrainConfig, ignore_index: int):
    weight = None if cfg.class_weights is None else torch.tensor(cfg.class_weights, dtype=torch.float32)
    if cfg.loss == "tau_ce":
        return torchlip.TauCrossEntropyLoss(tau=cfg.tau, weight=weight, ignore_index=ignore_index)
    if cfg.loss == "margin_ce":
        return _margin_ce(cfg.tau, weight, ignore_index)
    if cfg.loss == "hkr":
        hkr = torchlip.SoftHKRMulticlassLoss(alpha=0.95, min_margin=0.01, temperature=5.0)

        def loss(logits, target):
            k = logits.shape[1]
            z = logits.permute(0, 2, 3, 1).reshape(-1, k)
            t = target.reshape(-1)
            keep = t != ignore_index
            onehot = nn.functional.one_hot(t[keep], k).float()
            return hkr(z[keep], onehot)

        return loss
    raise LipcertError(f"Expected `loss` in {LOSSES}, but got {cfg.loss!r}.")


def _margin_ce(tau: float, weight, ignore_index: int):
    """``CE(tau * (z - kappa * onehot(y))) / tau`` with a per-call kappa (the schedule sets it)."""

    def loss(logits, target, kappa=0.0):
        k = logits.shape[1]
        safe = torch.where(target == ignore_index, torch.zeros_like(target), target)
        offset = nn.functional.one_hot(safe, k).permute(0, 3, 1, 2).to(logits.dtype) * kappa
        z = tau * (logits - offset)
        return nn.functional.cross_entropy(z, target, weight=weight, ignore_index=ignore_index) / tau

    return loss


def pgd_examples(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, norm: str, ignore_index: int
) -> torch.Tensor:
    """PGD on the cross-entropy from x (no random start), in eval mode (restored); returns x + delta."""
    step = 2.5 * eps / steps
    x_adv = x.clone()
    with eval_mode(model):
        for _ in range(steps):
            z = x_adv.clone().requires_grad_(True)
            loss = nn.functional.cross_entropy(model(z), y, ignore_index=ignore_index)
            (g,) = torch.autograd.grad(loss, z)
            if norm == "l2":
                g = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            else:
                g = g.sign()
            x_adv = project(x, x_adv + step * g, eps, norm).detach()
    return x_adv


def _init_from(model: nn.Module, path: str) -> int:
    """Copy every weight of the checkpoint whose name and shape match (PIR-AT initialisation)."""
    ckpt = read_checkpoint(path, ())
    state = ckpt.get("state_dict", ckpt)
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise LipcertError(f"No weight of {path} matches the model: cannot initialise from it.")
    model.load_state_dict(matched, strict=False)
    return len(matched)


def evaluate(
    model: nn.Module,
    dataset,
    *,
    eps: float | None = None,
    lipschitz: float | None = None,
    batch_size: int = 32,
    limit: int | None = None,
    ignore_index: int = 255,
) -> dict:
    """Clean pixel accuracy (micro), per-class IoU and mIoU (pooled), and certified accuracy.

    The certified pixel accuracy is the joint certificate, macro (mean over images), at ``eps`` with
    ``lipschitz`` (computed with :func:`lipschitz_bound` on the exported model when None and the model
    is not a "plain" twin).

    Returns:
        dict with ``pixel_accuracy_micro``, ``iou`` (K,), ``miou_pooled``, and when certified
        ``certified_pixel_accuracy_macro``, ``lipschitz``.

    Examples:
        >>> from lipcert.data import DigitScenes
        >>> from lipcert.models import LipUNet
        >>> ev = evaluate(LipUNet(11, widths=[(8, 1)], stem=8, gain=8.0), DigitScenes("test", n=2), eps=0.1)
        >>> sorted(k for k in ev if k != "iou")[:3]
        ['certified_pixel_accuracy_macro', 'eps', 'lipschitz']
    """
    frozen = export_plain(model)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    k = getattr(dataset, "num_classes", None)
    image0, _ = dataset[0]
    certify_now = eps is not None and (lipschitz is not None or getattr(model, "parametrization", "") != "plain")
    if certify_now and lipschitz is None:
        lipschitz = lipschitz_bound(frozen, tuple(image0.shape))
    cm, cert = None, []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            items = [dataset[i] for i in range(start, min(n, start + batch_size))]
            x = torch.stack([a for a, _ in items])
            y = torch.stack([b for _, b in items])
            logits = frozen(x)
            k = k or logits.shape[1]
            part = confusion_matrix(logits.argmax(1).numpy(), y.numpy(), k, ignore_index)
            cm = part if cm is None else cm + part
            if certify_now:
                cert.append(
                    certify_logits(
                        logits, eps, "pixel_accuracy", y, lipschitz=lipschitz, ignore_index=ignore_index
                    ).worst[:, 0]
                )
    iou = iou_from_confusion(cm)
    out = {
        "pixel_accuracy_micro": pixel_accuracy_from_confusion(cm),
        "iou": iou.tolist(),
        "miou_pooled": float(np.nanmean(iou)),
        "n_images": n,
    }
    if certify_now:
        out.update(
            certified_pixel_accuracy_macro=float(np.nanmean(np.concatenate(cert))), eps=eps, lipschitz=float(lipschitz)
        )
    return out


def recalibrate_centering(model: nn.Module, dataset, *, n_images: int = 1024, batch_size: int = 32) -> nn.Module:
    """Re-estimate every BatchCentering mean from data with the final weights (in place).

    deel-torchlip's BatchCentering keeps a running average of batch means accumulated while the weights
    were still moving, so after training it is stale. Here only the centering layers run in training
    mode (no gradient, every other layer in eval mode) over ``n_images`` training images, then the model
    returns to eval mode with the fresh means. Centering is a shift, so the Lipschitz bound is unchanged.

    Returns:
        The model, in eval mode.

    Examples:
        >>> from lipcert.data import DigitScenes
        >>> from lipcert.models import LipUNet
        >>> net = recalibrate_centering(LipUNet(11, widths=[(8, 1)], stem=8), DigitScenes(n=4), n_images=4)
        >>> net.training
        False
    """
    model.eval()
    centering = [m for m in model.modules() if isinstance(m, torchlip.BatchCentering)]
    if not centering:
        return model
    for m in centering:
        m.reset_states()
        m.train()
    n = min(n_images, len(dataset))
    with torch.no_grad():
        for start in range(0, n, batch_size):
            model(torch.stack([dataset[i][0] for i in range(start, min(n, start + batch_size))]))
    return model.eval()


def save_checkpoint(path: str, model: nn.Module, meta: dict) -> None:
    """Save the exported (frozen) weights + the model config + training metadata.

    Load with :func:`lipcert.models.load_checkpoint` (``torch.load(weights_only=True)``).
    """
    frozen = export_plain(model)
    torch.save(
        {
            "config": dict(model.config),
            "state_dict": frozen.state_dict(),
            "exported": True,
            "meta": json.loads(json.dumps(meta, default=str)),
        },
        path,
    )


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
        _init_from(model, cfg.init_from)
    loss_fn = _loss_fn(cfg, ignore_index)
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
