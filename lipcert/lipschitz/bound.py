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
from tqdm.auto import tqdm

from ..core.config import LIPSCHITZ_REL_SLACK
from ..core.errors import LipschitzBoundError
from ..core.model_state import eval_mode
from .functional_bounds import functional_bound
from .graph_facts import check_graph_is_the_model, input_size, node_facts, reroute_inplace_reads, tensor_args
from .layer_bounds import (
    LAYER_BOUNDS,
    REFUSED_LAYERS,
    adds_behaviour,
    layer_bound,
    layer_bounds,
)
from .neighbourhoods import across_activation_bound, merged_bound, only_feeds_merged_batchnorms

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
}
_METADATA_METHODS = {"size", "dim", "numel", "get_device"}  # values about a tensor, not of it
_METADATA_ATTRS = {"shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "layout"}
_SUM = {operator.add, operator.iadd, torch.add, operator.sub, operator.isub, torch.sub, "add", "sub"}
_ROOT_SUM_SQUARES = {torch.cat, torch.concat, torch.stack}
_ELEMENTWISE_PAIR = {torch.maximum, torch.minimum, "maximum", "minimum"}  # root of the sum of squares too
_SCALE = {operator.mul, operator.imul, torch.mul, operator.truediv, torch.div, "mul", "div"}


class _Tracer(fx.Tracer):
    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True  # refusals name the source line of a function node

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return type(m) in LAYER_BOUNDS or isinstance(m, tuple(LAYER_BOUNDS)) or super().is_leaf_module(m, qualname)


def _check_input_shape(input_shape) -> None:
    if input_shape is None:
        return
    ok = isinstance(input_shape, (tuple, list, torch.Size)) and len(input_shape) == 3
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_shape):
        raise LipschitzBoundError(
            f"Expected `input_shape` to be (C, H, W) of one image, three positive ints, but got {input_shape!r}."
        )


def _check_model_state(model: nn.Module) -> None:
    """Refuse what the traced graph cannot see or what makes a bound meaningless.

    Forward hooks (torch.fx does not run them) and non-finite weights or buffers, each named.
    """
    from torch.nn.modules import module as torch_module

    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        raise LipschitzBoundError(
            "Global forward hooks are registered (torch.nn.modules.module.register_module_forward_hook): "
            "they change outputs in ways the traced graph does not show. Remove them, or declare L with `lipschitz=`."
        )
    for name, mod in model.named_modules():
        label = f"{name or '<model>'} ({type(mod).__name__})"
        if mod._forward_hooks or mod._forward_pre_hooks:
            raise LipschitzBoundError(
                f"{label} has forward hooks, which may change its output in ways the bound does not see. "
                "Remove them, declare L with `lipschitz=`, or register a bound for the layer."
            )
        for pname, value in list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False)):
            if value is not None and value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise LipschitzBoundError(f"{label} has non-finite values (NaN or Inf) in `{pname}`: no bound exists.")


def _output_bound(node: fx.Node, bounds: dict) -> float:
    """Bound of the model's output: one tensor; a dict / tuple / list output is refused, naming it."""
    out = node.args[0] if node.args else None
    if isinstance(out, (dict, tuple, list)):
        kind = "dict" if isinstance(out, dict) else type(out).__name__
        keys = f" with keys {list(out)}" if isinstance(out, dict) else f" of {len(out)} items"
        raise LipschitzBoundError(
            f"The model returns a {kind}{keys}; lipcert certifies one logit tensor (B, K, H, W). Wrap the model "
            "so that it returns the logits (e.g. `lambda x: model(x)['out']` in an nn.Module)."
        )
    return bounds.get(out, 0.0) if isinstance(out, fx.Node) else 0.0


def lipschitz_bound(
    model: nn.Module,
    input_shape: tuple[int, ...] | None = None,
    *,
    bounds: dict | None = None,
    progress: bool = True,
) -> float:
    """A guaranteed upper bound on the l2 Lipschitz constant of ``input image -> whole logit map``.

    Computed from the eval-mode weights that run (parametrised layers are read through their current
    ``weight``), layer by layer, and composed through the traced graph. With ``input_shape`` the
    convolutions are bounded at the sizes they actually see (Fourier bound, tight for orthogonal
    convolutions); without it, a size-independent but looser receptive-field bound is used.
    See docs/models.md for why every layer bound is sound.

    Args:
        model: a torch module mapping (B, C, H, W) images in [0,1] to (B, K, H, W) logits.
        input_shape: (C, H, W) of one input image, or None.
        bounds: ``{layer type: fn(module, in_hw) -> float}`` for this call only (the rules of
            :func:`lipcert.lipschitz.register_layer_bound`: no built-in entry is replaced).
        progress: show a progress bar (on stderr) when the bound takes more than a second.

    Returns:
        L as a float (inflated by a relative 1e-6 for floating-point safety).

    Raises:
        LipschitzBoundError: unknown modules or operations (listed), reflect padding, replicate padding
            wider than 1, a product of two tensors, or a model fx cannot trace.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1, bias=False), torch.nn.ReLU())
        >>> with torch.no_grad():
        ...     _ = net[0].weight.fill_(0.5)
        >>> round(lipschitz_bound(net, (1, 8, 8)), 4)
        0.5
    """
    if not isinstance(model, nn.Module):
        raise LipschitzBoundError(f"Expected `model` to be a torch.nn.Module, but got {type(model).__name__}.")
    _check_input_shape(input_shape)
    _check_model_state(model)
    if bounds is not None and not isinstance(bounds, dict):
        raise LipschitzBoundError(f"Expected `bounds` to be a dict {{type: fn}}, but got {type(bounds).__name__}.")
    with layer_bounds(bounds or {}), eval_mode(model):
        root = nn.Sequential(model)  # so that a model that is itself a known layer stays a leaf
        try:
            graph = _Tracer().trace(root)
        except Exception as exc:  # fx raises many kinds of errors on untraceable code
            raise LipschitzBoundError(
                f"Cannot trace {type(model).__name__} with torch.fx to compose a bound: {exc}. Declare L "
                "explicitly with `lipschitz=` if you have a guarantee for it."
            ) from exc
        modules = dict(root.named_modules())
        reroute_inplace_reads(graph, modules)
        check_graph_is_the_model(root, graph, input_shape)
        facts = node_facts(root, graph, input_shape)
        sized = facts if input_shape is not None else None  # a guessed probe size says nothing of the real one
        bounds: dict[fx.Node, float] = {}
        inputs: dict[fx.Node, float] = {}  # bound of the one image-dependent input of each module call
        planes: dict[fx.Node, float] = {}  # bounds of convolutions' outputs over the whole plane (neighbourhoods)
        unknown: list[str] = []
        output = None
        nodes = tqdm(list(graph.nodes), desc="lipschitz_bound", delay=1.0, leave=False, disable=not progress)
        for node in nodes:
            args = tensor_args(node)
            prev = [bounds[a] for a in args if a in bounds]
            if node.op == "placeholder":
                bounds[node] = 1.0 if not bounds else 0.0  # only the first input is the image
            elif node.op == "get_attr":
                bounds[node] = 0.0  # a constant
            elif node.op == "output":
                output = _output_bound(node, bounds)
            elif node.op == "call_module":
                ctx = (modules, sized, facts, bounds, inputs, planes)
                bounds[node] = _module_call_bound(node, modules[node.target], prev, ctx, unknown)
            elif _is_metadata(node):
                continue  # x.shape, x.size(1), ...: no tensor flows on
            else:
                prev = _broadcast_scaled(node, args, bounds, facts, unknown)
                bounds[node] = _function_bound(node, prev, unknown, facts)
        if unknown:
            raise LipschitzBoundError(
                "No guaranteed Lipschitz bound for: "
                + ", ".join(sorted(set(unknown)))
                + ". Ways out: declare L explicitly with `lipschitz=` if you can guarantee it, or teach lipcert a "
                "bound for that layer with lipcert.lipschitz.register_layer_bound."
            )
        if not math.isfinite(output):
            raise LipschitzBoundError(f"The composed bound is not finite ({output}): no guarantee can be given.")
        return float(output) * (1.0 + LIPSCHITZ_REL_SLACK)


def _module_call_bound(node: fx.Node, mod: nn.Module, prev: list, ctx: tuple, unknown: list) -> float:
    """Bound of ``input image -> output of this module call`` (records the bound of its input in ``inputs``)."""
    modules, sized, facts, bounds, inputs, planes = ctx
    dependent = [b for b in prev if b != 0.0]  # a layer bound is a bound in its one input
    if len(dependent) > 1:
        unknown.append(f"{node.target[2:]} ({type(mod).__name__} called on several image-dependent inputs)")
    inputs[node] = dependent[0] if dependent else 0.0
    if inputs[node] > 0.0 and only_feeds_merged_batchnorms(node, mod, modules):
        return math.inf  # never read: each user bounds the merged pair (this product is not needed)
    factor = layer_bound(mod, input_size(node, sized))  # each call at the size it sees
    if factor is None:
        unknown.append(_unknown_module(node.target, mod))
        return math.nan
    merged = merged_bound(node, mod, modules, sized, facts, bounds, inputs)
    best = factor * inputs[node] if merged is None else min(factor * inputs[node], merged)
    chained = across_activation_bound(node, modules, sized, bounds, best, planes)
    return best if chained is None else min(best, chained)


_BROADCASTING = _SUM | _ELEMENTWISE_PAIR | _SCALE


def _broadcast_scaled(node: fx.Node, args: list, bounds: dict, numels, unknown: list[str]) -> list[float]:
    """The bounds of a node's tensor arguments, each times ``sqrt(repetitions)`` when broadcasting repeats it.

    Broadcasting an argument of n elements to an output of N elements copies each element N / n times,
    which multiplies its norm by ``sqrt(N / n)``. Without ``input_shape`` the repetition depends on the
    size, so a broadcast seen at a probe size is refused.
    """
    tensor_args = [a for a in args if bounds.get(a, 0.0) > 0]  # constants (bound 0) change no bound
    prev = [bounds[a] for a in tensor_args]
    if node.target not in _BROADCASTING or not prev:
        return prev
    if numels is None:
        if len(tensor_args) > 1:
            unknown.append(f"{_source(node)} (cannot check broadcasting: pass `input_shape`)")
        return prev
    sizes = numels["numels"]
    out = sizes.get(node)
    scaled = []
    for a, b in zip(tensor_args, prev, strict=True):
        n = sizes.get(a)
        if out is None or n is None or n == 0:
            scaled.append(b)
        elif n < out and numels["probe"]:
            reason = "broadcasts an operand: its bound depends on the size; pass `input_shape`"
            unknown.append(f"{_source(node)} ({reason})")
            scaled.append(b)
        else:
            scaled.append(b * math.sqrt(out / n) if n < out else b)
    return scaled


def _source(node: fx.Node) -> str:
    """A readable name of a graph node: the op and, when fx recorded it, the source line."""
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    trace = [t.strip() for t in (node.meta.get("stack_trace") or "").strip().splitlines() if t.strip()]
    frames = [(trace[i], trace[i + 1]) for i in range(len(trace) - 1) if trace[i].startswith("File ")]
    user = [f for f in frames if "/torch/" not in f[0] and "/lipcert/lipschitz/" not in f[0]]
    if not user:
        return str(target)
    where, code = user[-1]
    return f"{target} ({where.removeprefix('File ')}: {code})"


def _is_metadata(node: fx.Node) -> bool:
    if node.op == "call_method" and node.target in _METADATA_METHODS:
        return True
    return node.op == "call_function" and node.target is getattr and node.args[1:2] and node.args[1] in _METADATA_ATTRS


def _unknown_module(target: str, mod: nn.Module) -> str:
    """``path (Type: reason)`` of a module with no bound, its path as in the user's model."""
    path = target[2:] if target.startswith("0.") else "<the model itself>"
    for cls, reason in REFUSED_LAYERS.items():
        if isinstance(mod, cls):
            return f"{path} ({type(mod).__name__}: {reason})"
    for cls in type(mod).__mro__:
        if cls in LAYER_BOUNDS:
            return f"{path} ({type(mod).__name__}: a subclass of {cls.__name__}, but {adds_behaviour(mod, cls)})"
    return f"{path} ({type(mod).__name__}: no registered bound)"


def _function_bound(node: fx.Node, prev: list[float], unknown: list[str], facts=None) -> float:
    target = node.target
    name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    if target in _KEEP or getattr(target, "lipcert_identity", False):  # e.g. models.layers.check_input_size
        return prev[0] if prev else 0.0
    if not prev:
        return 0.0  # a function of constants only: a constant
    special = functional_bound(node, prev[0], facts) if len(prev) == 1 else None  # one image-dependent input
    if special is not None:
        if isinstance(special, str):
            unknown.append(f"{_source(node)} ({special})")
            return math.nan
        return special
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
    if target in _ROOT_SUM_SQUARES or target in _ELEMENTWISE_PAIR:
        return math.sqrt(sum(p * p for p in prev))
    if target in _SCALE:
        scaled = _scale_bound(node, prev, facts)
        if scaled is not None:
            return scaled
    unknown.append(f"{_source(node)} (no bound for {name})")
    return math.nan


def _scale_bound(node: fx.Node, prev: list[float], facts) -> float | None:
    """The bound of a scaling by a constant.

    ``x * c``, ``c * x``, ``x / c`` with c a number or a constant tensor (broadcast elementwise):
    ``max |c|`` and ``1 / min |c|``; None for anything else (a product of two image-dependent tensors).
    """
    if len(prev) != 1:
        return None
    divide = node.target in (operator.truediv, torch.div, "div")
    values = []
    for i, a in enumerate(node.args[:2]):
        if isinstance(a, (int, float)) and not isinstance(a, bool):
            values.append((i, torch.tensor(float(a))))
        elif isinstance(a, fx.Node) and facts is not None and a in facts["constants"]:
            values.append((i, facts["constants"][a].double()))
    if len(values) != 1:
        return None
    i, c = values[0]
    if not bool(torch.isfinite(c).all()):
        return None
    if divide:
        if i != 1 or bool((c == 0).any()):
            return None  # c / x is not Lipschitz; x / 0 is undefined
        return prev[0] / float(c.abs().min())
    return prev[0] * float(c.abs().max())
