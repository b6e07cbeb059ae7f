"""What one zero-input run of a traced model tells the bound: every node's shape and constant values."""

from __future__ import annotations

import inspect
import math
import operator

import torch
from torch import fx, nn

from ..core.errors import LipcertError, LipschitzBoundError


def zero_input(model: nn.Module, shape) -> torch.Tensor:
    """A zero image batch of one, in the dtype and on the device of the model's first parameter."""
    first = next(iter(model.parameters()), None)
    if first is None:
        first = next(iter(model.buffers()), None)
    if first is None or not first.is_floating_point():
        return torch.zeros(1, *shape)
    return torch.zeros(1, *shape, dtype=first.dtype, device=first.device)


def tensor_args(node: fx.Node) -> list[fx.Node]:
    """Every fx node among a node's arguments and keyword arguments, nested containers included."""
    flat = []

    def visit(a):
        if isinstance(a, fx.Node):
            flat.append(a)
        elif isinstance(a, (list, tuple)):
            for b in a:
                visit(b)

        elif isinstance(a, dict):
            for b in a.values():
                visit(b)

    visit(node.args)
    visit(list(node.kwargs.values()))
    return flat


class _Facts(fx.Interpreter):
    """Shapes and constant values of the traced graph, from one zero-input run.

    One zero-input run of the traced graph: the shape of every tensor node and the value of every node
    that does not depend on the image (buffers, parameters and what is computed from them).
    """

    def __init__(self, gm: fx.GraphModule, depends: dict) -> None:
        super().__init__(gm)
        self.depends, self.shapes, self.constants, self.values = depends, {}, {}, {}

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            self.shapes[n] = tuple(out.shape)
            if not self.depends.get(n, True):
                self.constants[n] = out.detach()
        elif isinstance(out, (int, float, bool, str, torch.Size)) or (
            isinstance(out, (tuple, list)) and all(isinstance(v, (int, float)) for v in out)
        ):
            self.values[n] = tuple(out) if isinstance(out, (tuple, list, torch.Size)) else out  # sizes, flags
        return out


def node_facts(root: nn.Module, graph: fx.Graph, input_shape) -> dict | None:
    """Shapes and constant values of the graph's nodes (None if the run fails at a guessed probe size)."""
    shape = input_shape if input_shape is not None else probe_shape(root)
    if shape is None:
        return None
    depends = {}
    for n in graph.nodes:
        depends[n] = n.op == "placeholder" or any(depends.get(a, False) for a in tensor_args(n))
    facts = _Facts(fx.GraphModule(root, graph), depends)
    try:
        with torch.no_grad():
            facts.run(zero_input(root, shape))
    except LipcertError:
        raise
    except Exception as exc:  # noqa: BLE001 - a probe at a guessed size may not fit the model
        if input_shape is not None:
            raise LipschitzBoundError(
                f"The model does not run on an input of shape {(1, *shape)} (check `input_shape`): {exc}"
            ) from exc
        return None
    numels = {n: math.prod(v) for n, v in facts.shapes.items()}
    return {
        "numels": numels,
        "shapes": facts.shapes,
        "constants": facts.constants,
        "values": facts.values,
        "probe": input_shape is None,
    }


def probe_shape(root: nn.Module):
    """(C, 64, 64) with C the input channels of the first layer that declares them (for the broadcast check)."""
    for m in root.modules():
        c = getattr(m, "in_channels", None) or getattr(m, "in_features", None)
        if isinstance(c, int):
            return (c, 64, 64)
    return None


def input_size(node: fx.Node, facts: dict | None) -> tuple[int, int] | None:
    """Spatial size of a module call's input, from the zero-input run of the graph (None if not run)."""
    if facts is None or not node.args or node.args[0] not in facts["shapes"]:
        return None
    shape = facts["shapes"][node.args[0]]
    return tuple(shape[-2:]) if len(shape) >= 3 else None


_INPLACE_OPERATORS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}


def _is_inplace(node: fx.Node, modules: dict) -> bool:
    """Whether a call overwrites its first argument.

    ``inplace=True`` as a module attribute, a keyword, or in the positional place of a function's
    ``inplace`` parameter; or an augmented assignment (``x += y``).
    """
    if node.op == "call_module":
        return getattr(modules.get(node.target), "inplace", False) is True
    if node.op != "call_function":
        return False
    if node.target in _INPLACE_OPERATORS or node.kwargs.get("inplace") is True:
        return True
    try:
        names = list(inspect.signature(node.target).parameters)
    except (TypeError, ValueError):  # builtins without a signature
        return False
    place = names.index("inplace") if "inplace" in names else None
    return place is not None and len(node.args) > place and node.args[place] is True


def reroute_inplace_reads(graph: fx.Graph, modules: dict) -> None:
    """Make every read after an in-place call (or a call writing into ``out=``) read that call's output.

    ``h = conv(x); act(h)`` with ``act`` in place, then ``h`` used again: torch.fx records the later use
    as a read of ``h``, but the tensor then holds ``act(h)``. Rerouting those reads to the activation's
    node makes every bound (and every merged neighbourhood, e.g. a BatchNorm "reading a convolution")
    describe what runs. ``torch.add(a, b, out=h)`` likewise overwrites ``h``.
    """
    order = {n: i for i, n in enumerate(graph.nodes)}
    for node in list(graph.nodes):
        out = node.kwargs.get("out") if node.op in ("call_function", "call_method") else None
        src = out if isinstance(out, fx.Node) else (node.args[0] if node.args else None)
        if not isinstance(src, fx.Node) or not (src is out or _is_inplace(node, modules)):
            continue
        for user in list(src.users):
            if user is not node and order[user] > order[node]:
                user.replace_input_with(src, node)


_ARITHMETIC = {operator.add, operator.sub, operator.mul, operator.truediv}


def check_graph_is_the_model(root: nn.Module, graph: fx.Graph, input_shape) -> None:
    """Refuse a graph that may not compute what the model computes: ``h += y`` on a tensor.

    torch.fx records an augmented assignment as ``h + y`` while the tensor ``h`` is changed in place, so
    later reads of ``h`` see the sum. When the graph holds an arithmetic node whose first operand is read
    again after it (the pattern such an assignment leaves), the traced graph and the model are run on
    one random input and must agree.
    """
    order = {n: i for i, n in enumerate(graph.nodes)}
    ambiguous = any(
        n.op == "call_function" and n.target in _ARITHMETIC and isinstance(n.args[0], fx.Node)
        and any(order[u] > order[n] for u in n.args[0].users if u is not n)
        for n in graph.nodes
    )  # fmt: skip
    shape = input_shape if input_shape is not None else probe_shape(root)
    if not ambiguous or shape is None:
        return
    x = zero_input(root, shape)
    x = torch.rand(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype).to(x.device)
    try:
        with torch.no_grad():
            want, got = root(x.clone()), fx.GraphModule(root, graph)(x.clone())
    except Exception:  # noqa: BLE001 - the graph's own run reports failures with their context
        return
    if torch.is_tensor(want) and torch.is_tensor(got) and want.shape == got.shape:
        scale = float(want.abs().max()) if want.numel() else 0.0
        if not torch.allclose(got, want, rtol=1e-4, atol=1e-6 * max(1.0, scale), equal_nan=True):
            raise LipschitzBoundError(
                "The traced graph does not compute what the model computes on a random input: an in-place "
                "update torch.fx does not record (e.g. `h += y` on a tensor that is read again) or a Python "
                "branch on values. Write `h = h + y`, or declare L with `lipschitz=` if you can guarantee it."
            )
