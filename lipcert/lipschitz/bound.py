"""Guaranteed upper bound on the l2 Lipschitz constant of a model, composed through its graph.

The model is traced with ``torch.fx`` (known layers stay leaves). Every node gets a bound ``L_v`` on the
Lipschitz constant of the map ``input image -> value of v``: a layer multiplies by its own bound; a sum
adds bounds; a concatenation of branches takes the root of the sum of squares; scaling by a constant
multiplies by its absolute value; reshapes, slices and permutations keep it. Anything else is refused,
with the list of what is unknown. A bias or a constant shift changes no bound (``f(x) + b`` has the
Lipschitz constant of ``f``), so layers are bounded as bias-free operators.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import LipschitzBoundError
from .layer_bounds import LAYER_BOUNDS, layer_bound

LIPSCHITZ_REL_SLACK = 1e-6  # covers LAPACK rounding of singular values and float32 weights -> float64

_KEEP = {  # functions and methods that are 1-Lipschitz in their (only) tensor argument
    F.relu,
    torch.relu,
    F.pixel_shuffle,
    F.pixel_unshuffle,
    torch.flatten,
    torch.reshape,
    torch.permute,
    torch.squeeze,
    torch.unsqueeze,
    operator.neg,
    torch.neg,
    torch.chunk,
    torch.split,
    torch.transpose,
    "relu",
    "view",
    "reshape",
    "flatten",
    "permute",
    "contiguous",
    "squeeze",
    "unsqueeze",
    "chunk",
    "split",
    "transpose",
    "clone",
    "detach",
    "float",
    "to",
    "neg",
    "size",
    "dim",
}
_SUM = {operator.add, operator.iadd, torch.add, operator.sub, operator.isub, torch.sub, "add", "sub"}
_ROOT_SUM_SQUARES = {torch.cat, torch.concat, torch.stack, torch.maximum, torch.minimum, "maximum", "minimum"}
_SCALE = {operator.mul, operator.imul, torch.mul, operator.truediv, torch.div, "mul", "div"}


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return type(m) in LAYER_BOUNDS or isinstance(m, tuple(LAYER_BOUNDS)) or super().is_leaf_module(m, qualname)


def _input_sizes(model: nn.Module, input_shape) -> dict[nn.Module, tuple[int, int]]:
    """Spatial input size of every leaf layer, from one zero-input forward in eval mode."""
    sizes: dict[nn.Module, tuple[int, int]] = {}

    def record(mod, args):
        shape = tuple(args[0].shape[-2:])
        if sizes.setdefault(mod, shape) != shape:
            raise LipschitzBoundError(f"{type(mod).__name__} is called on several input sizes.")

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, tuple(LAYER_BOUNDS))]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    return sizes


def _tensor_args(node: fx.Node) -> list[fx.Node]:
    flat = []

    def visit(a):
        if isinstance(a, fx.Node):
            flat.append(a)
        elif isinstance(a, (list, tuple)):
            for b in a:
                visit(b)

    visit(node.args)
    visit(list(node.kwargs.values()))
    return flat


def lipschitz_bound(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> float:
    """A guaranteed upper bound on the l2 Lipschitz constant of ``input image -> whole logit map``.

    Computed from the eval-mode weights that run (parametrised layers are read through their current
    ``weight``), layer by layer, and composed through the traced graph. With ``input_shape`` the
    convolutions are bounded at the sizes they actually see (Fourier bound, tight for orthogonal
    convolutions); without it, a size-independent but looser receptive-field bound is used.
    See docs/models.md for why every layer bound is sound.

    Args:
        model: a torch module mapping (B, C, H, W) images in [0,1] to (B, K, H, W) logits.
        input_shape: (C, H, W) of one input image, or None.

    Returns:
        L as a float (inflated by a relative 1e-6 for floating-point safety).

    Raises:
        LipschitzBoundError: unknown modules or operations (listed), reflect padding, replicate padding
            wider than 1, a product of two tensors, or a model fx cannot trace.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1, bias=False), torch.nn.ReLU())
        >>> with torch.no_grad():
        ...     _ = net[0].weight.fill_(0.5)
        >>> round(lipschitz_bound(net, (1, 8, 8)), 4)
        0.5
    """
    was_training = model.training
    model.eval()
    try:
        root = nn.Sequential(model)  # so that a model that is itself a known layer stays a leaf
        try:
            graph = _Tracer().trace(root)
        except Exception as exc:  # fx raises many kinds of errors on untraceable code
            raise LipschitzBoundError(
                f"Cannot trace {type(model).__name__} with torch.fx to compose a bound: {exc}. Declare L "
                "explicitly with `lipschitz=` if you have a guarantee for it."
            ) from exc
        sizes = _input_sizes(model, input_shape) if input_shape is not None else {}
        modules = dict(root.named_modules())
        bounds: dict[fx.Node, float] = {}
        unknown: list[str] = []
        output = None
        for node in graph.nodes:
            args = _tensor_args(node)
            prev = [bounds[a] for a in args if a in bounds]
            if node.op == "placeholder":
                bounds[node] = 1.0 if not bounds else 0.0  # only the first input is the image
            elif node.op == "get_attr":
                bounds[node] = 0.0  # a constant
            elif node.op == "output":
                output = max(prev) if prev else 0.0
            elif node.op == "call_module":
                mod = modules[node.target]
                factor = layer_bound(mod, sizes.get(mod))
                if factor is None:
                    unknown.append(f"{node.target} ({type(mod).__name__})")
                    factor = math.nan
                bounds[node] = factor * (prev[0] if prev else 0.0)
            else:
                bounds[node] = _function_bound(node, prev, unknown)
        if unknown:
            raise LipschitzBoundError(
                "No guaranteed Lipschitz bound for: "
                + ", ".join(sorted(set(unknown)))
                + ". Use supported layers, or declare L explicitly with `lipschitz=` if you can guarantee it."
            )
        return float(output) * (1.0 + LIPSCHITZ_REL_SLACK)
    finally:
        model.train(was_training)


def _function_bound(node: fx.Node, prev: list[float], unknown: list[str]) -> float:
    target = node.target
    name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    if target in _KEEP:
        return prev[0] if prev else 0.0
    if target in (operator.getitem, "__getitem__"):
        # basic indexing selects each coordinate at most once (a contraction); advanced indexing can repeat
        index = node.args[1] if len(node.args) > 1 else None
        parts = index if isinstance(index, tuple) else (index,)
        if all(p is None or p is Ellipsis or isinstance(p, (int, slice)) for p in parts):
            return prev[0] if prev else 0.0
        unknown.append(f"{node.name} (indexing with {index!r}: may repeat coordinates)")
        return math.nan
    if target is F.pad:
        mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
        if mode == "constant":  # zero (or constant) padding embeds isometrically
            return prev[0] if prev else 0.0
        unknown.append(f"{node.name} (F.pad mode={mode!r} repeats pixels)")
        return math.nan
    if target in _SUM:
        scale = node.kwargs.get("alpha", 1.0)
        return sum(prev[:1]) + abs(scale) * sum(prev[1:]) if prev else 0.0
    if target in _ROOT_SUM_SQUARES:
        return math.sqrt(sum(p * p for p in prev))
    if target in _SCALE:
        consts = [a for a in node.args if isinstance(a, (int, float))]
        if len(prev) == 1 and len(consts) == 1:
            c = consts[0]
            if target in (operator.truediv, torch.div, "div"):
                if node.args[0] is not None and not isinstance(node.args[0], (int, float)):
                    return prev[0] / abs(c)
            else:
                return prev[0] * abs(c)
        if not prev:
            return 0.0
    if target in (F.interpolate, "interpolate") or name == "interpolate":
        return _interpolate_bound(node, prev, unknown)
    unknown.append(f"{node.name} ({name})")
    return math.nan


def _interpolate_bound(node: fx.Node, prev: list[float], unknown: list[str]) -> float:
    mode = node.kwargs.get("mode", "nearest")
    scale = node.kwargs.get("scale_factor")
    if mode != "nearest" or scale is None:
        unknown.append(f"{node.name} (interpolate mode={mode!r}: only nearest with an integer scale_factor)")
        return math.nan
    scales = scale if isinstance(scale, (tuple, list)) else (scale, scale)
    if any(float(s) != int(s) or s < 1 for s in scales):
        unknown.append(f"{node.name} (interpolate with non-integer scale {scale})")
        return math.nan
    return prev[0] * math.sqrt(math.prod(int(s) for s in scales))
