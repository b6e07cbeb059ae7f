"""One Lipschitz forward pass against SegCertify: certificates and honest timing on the same images.

Used by ``benchmarks/compare_segcertify.py``, ``lipcert compare`` and ``lipcert demo``.
"""

from __future__ import annotations

import copy
import statistics
import time
from types import SimpleNamespace

import numpy as np
import torch
from tqdm.auto import tqdm

from ..certify import certify_logits
from ..core.errors import LipcertError
from ..core.model_state import eval_mode
from ..lipschitz import lipschitz_bound
from ..metrics.certified import CertifiedMetric
from ..smoothing import AbstainMetrics, certify_counts, sample_counts, tau_ceiling, tau_for_radius
from .config import SOURCE, CompareConfig, hardware, provenance


def _timer(device: str):
    """``timed(fn) -> (fn(), seconds)``; on a GPU the queue is drained before and after ``fn``."""
    if torch.device(device).type != "cuda":

        def timed(fn):
            t0 = time.perf_counter()
            out = fn()
            return out, time.perf_counter() - t0

        return timed

    def timed_cuda(fn):
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize(device)
        return out, time.perf_counter() - t0

    return timed_cuda


def _stats(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def _on_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model itself when it already lives on ``device``, else a copy moved there (never the caller's)."""
    tensors = list(model.parameters()) + list(model.buffers())
    if all(t.device == device for t in tensors):
        return model
    return copy.deepcopy(model).to(device)


def run_compare(lip_model: torch.nn.Module, twin_model: torch.nn.Module, dataset, cfg: CompareConfig) -> dict:
    """Certify the same images with the Lipschitz certificate and with SegCertify; time both.

    Args:
        lip_model: a Lipschitz model (its guaranteed bound is computed with :func:`lipschitz_bound`, on
            the weights as given, before both models are moved to ``cfg.device``).
        twin_model: the unconstrained, noise-trained twin smoothed by SegCertify.
        dataset: items (image float32 (C,H,W) in [0,1], target int64 (H,W)); ``num_classes`` attribute.
        cfg: a :class:`CompareConfig`.

    Returns:
        A JSON-ready dict: ``lipschitz`` (clean, certified pixel accuracy joint and per-pixel, worst mIoU,
        pooled per-class IoU; macro and micro named), ``segcertify`` (per setting and eps), ``timing``,
        ``ratios`` (``overhead``, ``speedup_vs_segcertify``, ``curve_64_vs_1``), ``hardware``.
    """
    n_images = len(dataset) if cfg.limit is None else min(cfg.limit, len(dataset))
    if n_images < 1:
        raise LipcertError("The comparison needs at least one image.")
    k = dataset.num_classes
    ignore = getattr(dataset, "ignore_index", 255)
    eps = sorted(float(e) for e in cfg.eps)
    image0, _ = dataset[0]
    L = lipschitz_bound(lip_model, tuple(image0.shape))
    device = torch.device(cfg.device)
    with eval_mode(lip_model), eval_mode(twin_model):
        lip, twin = _on_device(lip_model, device), _on_device(twin_model, device)
        with eval_mode(lip), eval_mode(twin):
            return _compare_models(lip, twin, dataset, cfg, L, n_images, k, ignore, eps, image0, device)


def _compare_models(lip_model, twin_model, dataset, cfg, L, n_images, k, ignore, eps, image0, device) -> dict:
    """The body of :func:`run_compare`, with both models in eval mode on ``device``."""
    _timed = _timer(cfg.device)
    curve = np.linspace(0.0, max(eps), 64)
    common = dict(lipschitz=L, ignore_index=ignore, lipschitz_source=SOURCE)
    acc = {avg: CertifiedMetric("pixel_accuracy", eps, average=avg, **common) for avg in ("macro", "micro")}
    miou = {
        avg: CertifiedMetric("miou", eps, lipschitz=L, ignore_index=ignore, average=avg, lipschitz_source=SOURCE)
        for avg in ("macro", "micro")
    }
    iou_micro = CertifiedMetric("iou", eps, lipschitz=L, ignore_index=ignore, average="micro", lipschitz_source=SOURCE)
    recall_micro = CertifiedMetric(
        "recall", eps, lipschitz=L, ignore_index=ignore, average="micro", lipschitz_source=SOURCE
    )
    curve_acc = CertifiedMetric(
        "pixel_accuracy", curve, lipschitz=L, ignore_index=ignore, average="macro", lipschitz_source=SOURCE
    )
    settings = [(s, a, b) for s in cfg.sigma for a in cfg.n0 for b in cfg.n]
    sc_metrics = {(si, e): AbstainMetrics(k, ignore_index=ignore) for si in range(len(settings)) for e in eps}
    sc_time = {si: [] for si in range(len(settings))}
    t_fwd, t_cert, t_fwd1, t_cert1, t_fwd64, t_cert64 = [], [], [], [], [], []
    example = {}
    gen = torch.Generator(device).manual_seed(cfg.seed)
    xb0 = torch.stack([dataset[i][0] for i in range(min(cfg.lip_batch, n_images))]).to(device)
    yb0 = torch.stack([dataset[i][1] for i in range(min(cfg.lip_batch, n_images))])
    with torch.no_grad():
        for _ in range(cfg.warmup):  # warm-up: allocator, numba dispatch, caches
            logits = lip_model(xb0)
            certify_logits(logits, eps, "pixel_accuracy", yb0, lipschitz=L, ignore_index=ignore)
            twin_model(xb0)
    bar = tqdm(total=n_images, desc="images", disable=not cfg.progress)
    for start in range(0, n_images, cfg.lip_batch):
        items = [dataset[i] for i in range(start, min(n_images, start + cfg.lip_batch))]
        xb, yb = torch.stack([a for a, _ in items]).to(device), torch.stack([b for _, b in items])
        m = len(items)
        with torch.no_grad():
            logits = lip_model(xb)

        cert = certify_logits(logits, eps, "pixel_accuracy", yb, lipschitz=L, ignore_index=ignore)
        if m == cfg.lip_batch or start == 0:  # per-image time of full batches (a short last batch is skipped)
            for _ in range(cfg.timing_repeats):
                # every certificate is timed right after the forward pass whose logits it certifies
                for radii, fwd_times, cert_times in ((eps, t_fwd, t_cert), (eps[:1], t_fwd1, t_cert1),
                                                     (curve, t_fwd64, t_cert64)):  # fmt: skip
                    with torch.no_grad():
                        fresh, tf = _timed(lambda xb=xb: lip_model(xb))
                    _, tc = _timed(
                        lambda fresh=fresh, radii=radii, yb=yb: certify_logits(
                            fresh, radii, "pixel_accuracy", yb, lipschitz=L, ignore_index=ignore
                        )
                    )
                    fwd_times.append(tf / m)
                    cert_times.append(tc / m)
        for metric in (*acc.values(), *miou.values(), iou_micro, recall_micro, curve_acc):
            metric.update(logits, yb)
        if start == 0:
            example = {
                "image": xb[0].cpu().numpy(),
                "target": yb[0].numpy(),
                "pred": logits.argmax(1)[0].cpu().numpy(),
                "radius": cert.pixel_radius[0],
            }
        for x, y in items:
            for si, (sigma, n0, n) in enumerate(settings):
                mode, counts, ts = sample_counts(twin_model, x.to(device), sigma, n0, n, cfg.batch_size, gen)
                per_eps_t = []
                for e in eps:
                    tau = tau_for_radius(e, sigma)
                    if tau > tau_ceiling(n, mode.size, cfg.alpha):
                        continue
                    res, tt = _timed(
                        lambda tau=tau, mode=mode, counts=counts, sigma=sigma, n=n: certify_counts(
                            mode, counts, n, tau, cfg.alpha, sigma
                        )
                    )
                    per_eps_t.append(tt)
                    sc_metrics[(si, e)].update(res.labels[None], y[None].numpy())
                    if not example.get("abstain_done") and si == 0:
                        example.setdefault("abstain", {})[e] = res.labels
                sc_time[si].append(ts + (statistics.median(per_eps_t) if per_eps_t else 0.0))
            example["abstain_done"] = True
            bar.update(1)
    bar.close()
    large = _overhead_at_size(lip_model, image0.shape[0], cfg, eps, L, k, _timed) if cfg.overhead_size else None
    return _summarise(cfg, SimpleNamespace(**{k: v for k, v in locals().items() if k != "cfg"}))


def _overhead_at_size(lip_model, channels, cfg, eps, L, k, _timed) -> dict:
    """Forward vs forward + certificate of the same model on one random image of ``cfg.overhead_size``."""
    h, w = cfg.overhead_size
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.rand(1, channels, h, w, generator=gen).to(cfg.device)
    y = torch.randint(0, k, (1, h, w), generator=gen)
    fwd, total = [], []
    for rep in range(4):
        with torch.no_grad():
            logits, tf = _timed(lambda: lip_model(x))
        _, tc = _timed(lambda logits=logits: certify_logits(logits, eps, "pixel_accuracy", y, lipschitz=L))
        if rep:  # the first repeat is the warm-up
            fwd.append(tf)
            total.append(tf + tc)
    return {
        "size": [h, w],
        "forward_seconds": statistics.median(fwd),
        "total_seconds": statistics.median(total),
        "overhead": statistics.median(total) / statistics.median(fwd),
    }


def _summarise(cfg, run) -> dict:
    """Turn the accumulated state of :func:`run_compare` (a namespace of its locals) into the results dict."""
    eps, L, k, n_images, settings, example = run.eps, run.L, run.k, run.n_images, run.settings, run.example
    chosen = cfg.foreground if cfg.foreground is not None else getattr(run.dataset, "foreground_classes", ())
    foreground = [int(c) for c in chosen]
    if any(not 0 <= c < k for c in foreground):
        raise LipcertError(f"Expected foreground classes in [0, {k}), but got {foreground}.")
    acc, miou, iou_micro, recall_micro, curve_acc, curve = (
        run.acc,
        run.miou,
        run.iou_micro,
        run.recall_micro,
        run.curve_acc,
        run.curve,
    )
    sc_metrics, sc_time, large = run.sc_metrics, run.sc_time, run.large
    t_fwd, t_cert, t_cert1, t_cert64 = run.t_fwd, run.t_cert, run.t_cert1, run.t_cert64
    ca = {avg: m.compute() for avg, m in acc.items()}
    cm = {avg: m.compute() for avg, m in miou.items()}
    ci = iou_micro.compute()
    cr = recall_micro.compute()
    lip = {
        "lipschitz": L,
        "lipschitz_source": SOURCE,
        "clean_pixel_accuracy": {avg: float(ca[avg].clean) for avg in ca},
        "clean_miou": {avg: float(cm[avg].clean) for avg in cm},
        "certified_pixel_accuracy_joint": {avg: ca[avg].worst.tolist() for avg in ca},
        "certified_pixel_accuracy_per_pixel": {avg: ca[avg].naive.tolist() for avg in ca},
        "worst_miou_bound": {avg: cm[avg].worst.tolist() for avg in cm},
        "worst_iou_per_class_micro": np.where(np.isnan(ci.worst), None, ci.worst).tolist(),
        "clean_iou_per_class_micro": np.where(np.isnan(ci.clean), None, ci.clean).tolist(),
        "foreground_classes": list(foreground),
        "certified_foreground_recall_micro": (
            np.nanmean(cr.worst[:, foreground], axis=1).tolist() if foreground else None
        ),
        "curve_eps": curve.tolist(),
        "curve_certified_pixel_accuracy_macro": curve_acc.compute().worst.tolist(),
    }
    sc = []
    for si, (sigma, n0, n) in enumerate(settings):
        rows = []
        for e in eps:
            tau = tau_for_radius(e, sigma)
            ceiling = tau_ceiling(n, int(example["pred"].size), cfg.alpha)
            if tau > ceiling:
                rows.append({"eps": e, "tau": tau, "reachable": False, "tau_ceiling": ceiling})
                continue
            out = sc_metrics[(si, e)].compute()
            rows.append(
                {
                    "eps": e,
                    "tau": tau,
                    "reachable": True,
                    "tau_ceiling": ceiling,
                    **{key: (v.tolist() if isinstance(v, np.ndarray) else v) for key, v in out.items()},
                }
            )
        sc.append(
            {
                "sigma": sigma,
                "n0": n0,
                "n": n,
                "alpha": cfg.alpha,
                "forward_passes_per_image": n0 + n,
                "seconds_per_image": _stats(sc_time[si]),
                "results": rows,
            }
        )
    lip_total = [a + b for a, b in zip(t_fwd, t_cert, strict=True)]
    curve1 = [a + b for a, b in zip(run.t_fwd1, t_cert1, strict=True)]
    curve64 = [a + b for a, b in zip(run.t_fwd64, t_cert64, strict=True)]
    med = statistics.median
    ratios = {
        "overhead": med(lip_total) / med(t_fwd),
        "speedup_vs_segcertify": {
            f"sigma={s},n0={a},n={b}": med(sc_time[si]) / med(lip_total) for si, (s, a, b) in enumerate(settings)
        },
        "curve_64_vs_1": med(curve64) / med(curve1),
        "curve_64_vs_1_certification_only": med(t_cert64) / med(t_cert1),
    }
    if large is not None:
        ratios["overhead_at_size"] = large
    timing = {
        "lipschitz_forward": _stats(t_fwd),
        "lipschitz_certification": _stats(t_cert),
        "lipschitz_total": _stats(lip_total),
        "forward_passes_per_image": 1,
        "samples": len(t_fwd),  # timed (forward, certificate) pairs, one per repeat of every full batch
    }
    return {
        "n_images": n_images,
        "eps": eps,
        "hardware": hardware(cfg.device),
        "provenance": provenance(cfg),
        "lip_batch": cfg.lip_batch,
        "sample_batch": cfg.batch_size,
        "lipschitz": lip,
        "segcertify": sc,
        "timing": timing,
        "ratios": ratios,
        "_example": example,
    }
