"""What one zero-input run of a traced model tells the bound: every node's shape and constant values."""

from __future__ import annotations

import math

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
