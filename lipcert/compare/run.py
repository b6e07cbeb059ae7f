"""One Lipschitz forward pass against SegCertify: certificates and honest timing on the same images.

Used by ``benchmarks/compare_segcertify.py``, ``lipcert compare`` and ``lipcert demo``.
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import norm
from tqdm.auto import tqdm

from ..certify import certify_logits
from ..core.distributed import gather_objects, is_main, shard
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
    L = lipschitz_bound(lip_model, tuple(image0.shape), progress=cfg.progress)
    device = torch.device(cfg.device)
    with eval_mode(lip_model), eval_mode(twin_model):
        lip, twin = _on_device(lip_model, device), _on_device(twin_model, device)
        with eval_mode(lip), eval_mode(twin):
            return _compare_models(lip, twin, dataset, cfg, L, n_images, k, ignore, eps, image0, device)


CORRECTION = "holm"  # SegCertify's multiple-testing correction in the comparison (the reference's default)


@dataclass
class _Run:
    """What a comparison accumulates on one process; its timing lists are gathered before the summary."""

    eps: list
    curve: np.ndarray
    settings: list
    lipschitz: dict  # CertifiedMetric per role: acc_macro, acc_micro, miou_macro, miou_micro, iou, recall, curve
    sc_metrics: dict  # (setting index, eps) -> AbstainMetrics
    sc_time: dict  # setting index -> seconds per image
    twin_clean: AbstainMetrics  # the twin's own (unsmoothed) predictions: its clean accuracy and mIoU
    times: dict = field(default_factory=lambda: {k: [] for k in ("fwd", "cert", "fwd1", "cert1", "fwd64", "cert64")})
    example: dict = field(default_factory=dict)
    seconds: list = field(default_factory=list)  # wall time of each process's shard


def _new_run(cfg, L: float, k: int, ignore, eps: list) -> _Run:
    curve = np.linspace(0.0, max(eps), 64)
    common = dict(lipschitz=L, ignore_index=ignore, lipschitz_source=SOURCE)
    metrics = {}
    for avg in ("macro", "micro"):
        metrics[f"acc_{avg}"] = CertifiedMetric("pixel_accuracy", eps, average=avg, **common)
        metrics[f"miou_{avg}"] = CertifiedMetric("miou", eps, average=avg, **common)
    metrics["iou"] = CertifiedMetric("iou", eps, average="micro", **common)
    metrics["recall"] = CertifiedMetric("recall", eps, average="micro", **common)
    metrics["curve"] = CertifiedMetric("pixel_accuracy", curve, average="macro", **common)
    settings = [(s, a, b) for s in cfg.sigma for a in cfg.n0 for b in cfg.n]
    sc_metrics = {(si, e): AbstainMetrics(k, ignore_index=ignore) for si in range(len(settings)) for e in eps}
    sc_time = {si: [] for si in range(len(settings))}
    return _Run(eps, curve, settings, metrics, sc_metrics, sc_time, AbstainMetrics(k, ignore_index=ignore))


def noise_generator(seed: int, index: int, device) -> torch.Generator:
    """SegCertify's noise for image ``index``: a stream seeded from (seed, index) alone.

    The same image gets the same noise for any number of processes and any order of the images.

    Args:
        seed: the comparison's seed.
        index: the image's index in the dataset.
        device: where the noise is drawn.

    Returns:
        A ``torch.Generator`` on ``device``.

    Examples:
        >>> a = torch.rand(3, generator=noise_generator(0, 7, "cpu"))
        >>> torch.equal(a, torch.rand(3, generator=noise_generator(0, 7, "cpu")))
        True
    """
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint32)
    return torch.Generator(device).manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


def _warm_up(lip_model, twin_model, dataset, cfg, n_images, L, ignore, eps, device) -> None:
    """Allocator, numba dispatch and caches warmed before anything is timed."""
    first = [dataset[i] for i in range(min(cfg.lip_batch, n_images))]
    xb0, yb0 = torch.stack([a for a, _ in first]).to(device), torch.stack([b for _, b in first])
    with torch.no_grad():
        for _ in range(cfg.warmup):
            logits = lip_model(xb0)
            certify_logits(logits, eps, "pixel_accuracy", yb0, lipschitz=L, ignore_index=ignore)
            twin_model(xb0)


def _lipschitz_batch(run: _Run, lip_model, items, cfg, L, ignore, timed, device, first: bool) -> None:
    """One forward pass of a batch, its certificates accumulated, and (full batches) timed."""
    eps = run.eps
    xb, yb = torch.stack([a for a, _ in items]).to(device), torch.stack([b for _, b in items])
    m = len(items)
    with torch.no_grad():
        logits = lip_model(xb)
    cert = certify_logits(logits, eps, "pixel_accuracy", yb, lipschitz=L, ignore_index=ignore)
    if m == cfg.lip_batch or first:  # per-image time of full batches (a short last batch is skipped)
        for _ in range(cfg.timing_repeats):
            # every certificate is timed right after the forward pass whose logits it certifies
            for radii, key in ((eps, ""), (eps[:1], "1"), (run.curve, "64")):
                with torch.no_grad():
                    fresh, tf = timed(lambda xb=xb: lip_model(xb))
                _, tc = timed(
                    lambda fresh=fresh, radii=radii: certify_logits(
                        fresh, radii, "pixel_accuracy", yb, lipschitz=L, ignore_index=ignore
                    )
                )
                run.times["fwd" + key].append(tf / m)
                run.times["cert" + key].append(tc / m)
    for metric in run.lipschitz.values():
        metric.update(logits, yb)
    if first:
        run.example.update(
            image=xb[0].cpu().numpy(), target=yb[0].numpy(), pred=logits.argmax(1)[0].cpu().numpy(),
            radius=cert.pixel_radius[0],
        )  # fmt: skip


def _segcertify_image(run: _Run, twin_model, x, y, index: int, cfg, timed, device) -> None:
    """SegCertify on one image for every setting and reachable eps (noise seeded from the image index)."""
    gen = noise_generator(cfg.seed, index, device)
    with torch.no_grad():  # the twin's clean prediction (not timed: not part of SegCertify's cost)
        clean = twin_model(x[None].to(device)).argmax(1).cpu().numpy()
    run.twin_clean.update(clean, y[None].numpy())
    for si, (sigma, n0, n) in enumerate(run.settings):
        mode, counts, ts = sample_counts(twin_model, x.to(device), sigma, n0, n, cfg.batch_size, gen)
        per_eps_t = []
        for e in run.eps:
            tau = tau_for_radius(e, sigma)
            if tau > tau_ceiling(n, mode.size, cfg.alpha):
                continue
            res, tt = timed(
                lambda tau=tau, mode=mode, counts=counts, sigma=sigma, n=n: certify_counts(
                    mode, counts, n, tau, cfg.alpha, sigma, correction=CORRECTION
                )
            )
            per_eps_t.append(tt)
            run.sc_metrics[(si, e)].update(res.labels[None], y[None].numpy())
            if not run.example.get("abstain_done") and si == 0:
                run.example.setdefault("abstain", {})[e] = res.labels
        run.sc_time[si].append(ts + (statistics.median(per_eps_t) if per_eps_t else 0.0))
    run.example["abstain_done"] = True


def _gather_timings(run: _Run) -> None:
    """Every process's timing lists, pooled (the metrics gather their own states in compute())."""
    gathered = gather_objects((run.times, run.sc_time, run.seconds))
    run.times = {key: [t for times, _, _ in gathered for t in times[key]] for key in run.times}
    run.sc_time = {si: [t for _, sc, _ in gathered for t in sc[si]] for si in run.sc_time}
    run.seconds = [s for _, _, seconds in gathered for s in seconds]


def _compare_models(lip_model, twin_model, dataset, cfg, L, n_images, k, ignore, eps, image0, device) -> dict:
    """The body of :func:`run_compare`, with both models in eval mode on ``device``; this process's shard."""
    timed = _timer(cfg.device)
    run = _new_run(cfg, L, k, ignore, eps)
    _warm_up(lip_model, twin_model, dataset, cfg, n_images, L, ignore, eps, device)
    mine = shard(n_images)
    t0 = time.perf_counter()
    bar = tqdm(total=len(mine), desc="images", disable=not cfg.progress or not is_main())
    for start in range(0, len(mine), cfg.lip_batch):
        indices = mine[start : start + cfg.lip_batch]
        items = [dataset[i] for i in indices]
        _lipschitz_batch(run, lip_model, items, cfg, L, ignore, timed, device, first=start == 0)
        for index, (x, y) in zip(indices, items, strict=True):
            _segcertify_image(run, twin_model, x, y, index, cfg, timed, device)
            bar.update(1)
    bar.close()
    run.seconds = [time.perf_counter() - t0]
    _gather_timings(run)
    large = None
    if cfg.overhead_size and is_main():
        large = _overhead_at_size(lip_model, image0.shape[0], cfg, eps, L, k, timed)
    return _summarise(cfg, run, dataset, L, k, n_images, int(image0[0].numel()), large)


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


def _lipschitz_summary(run: _Run, L: float, foreground: list) -> dict:
    """The Lipschitz side of the results (every compute() gathers the states of every process)."""
    c = {role: metric.compute() for role, metric in run.lipschitz.items()}
    ca = {avg: c[f"acc_{avg}"] for avg in ("macro", "micro")}
    cm = {avg: c[f"miou_{avg}"] for avg in ("macro", "micro")}
    ci, cr = c["iou"], c["recall"]
    return {
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
        "curve_eps": run.curve.tolist(),
        "curve_certified_pixel_accuracy_macro": c["curve"].worst.tolist(),
    }


def _segcertify_summary(cfg, run: _Run, n_pixels: int, foreground: list) -> list:
    """One entry per SegCertify setting: every eps, reachable or not, with its metrics and the twin's clean values."""
    clean = run.twin_clean.compute()
    twin = {
        "twin_clean_pixel_accuracy": {avg: clean[f"certified_pixel_accuracy_{avg}"] for avg in ("macro", "micro")},
        "twin_clean_miou": {avg: clean[f"certified_map_miou_{avg}"] for avg in ("macro", "micro")},
    }
    sc = []
    for si, (sigma, n0, n) in enumerate(run.settings):
        rows = []
        for e in run.eps:
            tau = tau_for_radius(e, sigma)
            ceiling = tau_ceiling(n, n_pixels, cfg.alpha)
            if tau > ceiling:
                rows.append({"eps": e, "tau": tau, "reachable": False, "tau_ceiling": ceiling})
                continue
            out = run.sc_metrics[(si, e)].compute()
            recall = out["certified_recall_micro"][foreground] if foreground else np.array([])
            out["certified_foreground_recall_micro"] = float(np.nanmean(recall)) if np.isfinite(recall).any() else None
            values = {
                key: (np.where(np.isnan(v), None, v).tolist() if isinstance(v, np.ndarray) else v)
                for key, v in out.items()
            }
            radius = sigma * float(norm.ppf(tau))  # the radius SegCertify certifies at this tau (= eps)
            rows.append({"eps": e, "tau": tau, "radius": radius, "reachable": True, "tau_ceiling": ceiling, **values})
        sc.append(
            {
                "sigma": sigma,
                "n0": n0,
                "n": n,
                "alpha": cfg.alpha,
                "correction": CORRECTION,
                **twin,
                "forward_passes_per_image": n0 + n,
                "seconds_per_image": _stats(run.sc_time[si]),
                "results": rows,
            }
        )
    return sc


def _quartiles(xs: list[float]) -> list[float]:
    """[first, third] quartile (a single value twice when there is one)."""
    if len(xs) < 2:
        return [xs[0], xs[0]] if xs else [float("nan")] * 2
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return [q[0], q[2]]


def _timing_summary(run: _Run, large) -> tuple[dict, dict]:
    """(timing, ratios): medians and spread of the per-image times pooled over every process."""
    t = run.times
    lip_total = [a + b for a, b in zip(t["fwd"], t["cert"], strict=True)]
    curve1 = [a + b for a, b in zip(t["fwd1"], t["cert1"], strict=True)]
    curve64 = [a + b for a, b in zip(t["fwd64"], t["cert64"], strict=True)]
    med = statistics.median
    ratios = {
        "overhead": med(lip_total) / med(t["fwd"]),
        "speedup_vs_segcertify": {
            f"sigma={s},n0={a},n={b}": med(run.sc_time[si]) / med(lip_total)
            for si, (s, a, b) in enumerate(run.settings)
        },
        "curve_64_vs_1": med(curve64) / med(curve1),
        "curve_64_vs_1_certification_only": med(t["cert64"]) / med(t["cert1"]),
        # spread: quartiles of the ratio within each repeat (both timed back to back on the same batch)
        "curve_64_vs_1_quartiles": _quartiles([a / b for a, b in zip(curve64, curve1, strict=True)]),
        "curve_64_vs_1_certification_only_quartiles": _quartiles(
            [a / b for a, b in zip(t["cert64"], t["cert1"], strict=True)]
        ),
    }
    if large is not None:
        ratios["overhead_at_size"] = large
    timing = {
        "lipschitz_forward": _stats(t["fwd"]),
        "lipschitz_certification": _stats(t["cert"]),
        "lipschitz_total": _stats(lip_total),
        "forward_passes_per_image": 1,
        "samples": len(t["fwd"]),  # timed (forward, certificate) pairs, one per repeat of every full batch
        "processes": len(run.seconds),
        "wall_seconds_per_process": run.seconds,
        "wall_seconds": max(run.seconds),
    }
    return timing, ratios


def _summarise(cfg, run: _Run, dataset, L: float, k: int, n_images: int, n_pixels: int, large) -> dict:
    """The results dict of :func:`run_compare` (computed on every process; rank 0 writes it)."""
    chosen = cfg.foreground if cfg.foreground is not None else getattr(dataset, "foreground_classes", ())
    foreground = [int(c) for c in chosen]
    if any(not 0 <= c < k for c in foreground):
        raise LipcertError(f"Expected foreground classes in [0, {k}), but got {foreground}.")
    timing, ratios = _timing_summary(run, large)
    return {
        "n_images": n_images,
        "eps": run.eps,
        "class_names": [str(c) for c in getattr(dataset, "class_names", [f"class {i}" for i in range(k)])],
        "hardware": hardware(cfg.device),
        "provenance": provenance(cfg),
        "lip_batch": cfg.lip_batch,
        "sample_batch": cfg.batch_size,
        "lipschitz": _lipschitz_summary(run, L, foreground),
        "segcertify": _segcertify_summary(cfg, run, n_pixels, foreground),
        "timing": timing,
        "ratios": ratios,
        "_example": run.example,
    }
