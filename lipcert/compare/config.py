"""The settings of a comparison and the provenance recorded beside its results."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

import torch

from ..core.checks import check_eps, check_positive
from ..core.errors import LipcertError


@dataclass
class CompareConfig:
    """Settings of :func:`run_compare` (eps, sigma: l2 in [0,1] pixel units)."""

    eps: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5])
    sigma: list[float] = field(default_factory=lambda: [0.25])
    n0: list[int] = field(default_factory=lambda: [10])
    n: list[int] = field(default_factory=lambda: [100])
    alpha: float = 0.001
    limit: int | None = None
    seed: int = 0
    batch_size: int = 64  # noisy samples per SegCertify forward pass
    lip_batch: int = 16  # images per Lipschitz forward pass (per-image time = batch time / batch size)
    warmup: int = 3
    timing_repeats: int = 10  # timed repeats of every full Lipschitz batch (median over all)
    overhead_size: tuple[int, int] | None = (512, 1024)  # also time forward vs certificate at this size
    device: str = "cpu"  # where both networks run ("cuda": timings synchronise the GPU)
    progress: bool = True
    foreground: list[int] | None = None  # classes of the foreground recall (default: the dataset's own)

    def __post_init__(self) -> None:
        check_eps(self.eps)
        for value in self.sigma:
            check_positive(value, "sigma")
        for name in ("n0", "n"):
            for value in getattr(self, name):
                check_positive(value, name, integer=True)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 < self.alpha < 1:
            raise LipcertError(f"Expected `alpha` in (0, 1), but got {self.alpha!r}.")
        if self.limit is not None:
            check_positive(self.limit, "limit", integer=True)
        for name in ("batch_size", "lip_batch", "timing_repeats"):
            check_positive(getattr(self, name), name, integer=True)
        check_positive(self.warmup, "warmup", integer=True, allow_zero=True)
        if self.foreground is not None:
            for c in self.foreground:
                check_positive(c, "foreground", integer=True, allow_zero=True)


SOURCE = "computed: lipcert.lipschitz_bound"


def provenance(cfg) -> dict:
    """Versions, the command line and the seed, for the JSON output (reproducibility)."""
    import sys
    from importlib.metadata import PackageNotFoundError, version

    def ver(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "versions": {name: ver(name) for name in ("lipcert", "torch", "numba", "ortools", "numpy", "scipy")},
        "command": " ".join(sys.argv),
        "seed": cfg.seed,
        "lipschitz_source": SOURCE,
    }


def hardware(device: str = "cpu") -> str:
    """A one-line description of the machine the timings come from (the GPU only if the models run on it)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    desc = f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    if torch.device(device).type == "cuda":
        desc += f", GPU {torch.cuda.get_device_name(torch.device(device))}"
    return desc
