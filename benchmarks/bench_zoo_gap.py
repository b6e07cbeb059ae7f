"""How tight ``lipschitz_bound`` is on the plain zoo, and how tight any slope-based bound could be.

Run: ``.venv/bin/python benchmarks/bench_zoo_gap.py [--size 64]`` (a few minutes, no timings).
For each random-init plain model of ``bench_zoo.py`` (and the small ones of the test suite), at
``size x size``:

- the guaranteed bound of ``lipschitz_bound``;
- a realised lower bound, ``lipschitz_lower_bound`` (power iteration on the Jacobian at 4 inputs, then
  300 steps of its pair search from each, anywhere in the input space: a bound of the global constant);
- the *slope relaxation*: every activation replaced by a linear map with per-neuron slopes chosen in
  its slope range ([0, 1] for ReLU, [-0.13, 1.13] for GELU, ...: ``lipcert.lipschitz.activations``) to
  maximise the Jacobian norm (alternating power iteration and the best slope for each neuron). Every
  bound that treats the activations only by their slope ranges (layer products, LipSDP, Gram iteration,
  the bound across an activation) must be at least this value, so ``relaxed / realised`` is the best
  ratio such a method can reach against this lower bound, and ``bound / relaxed`` what a better
  composition could still gain. The relaxed value is a norm of a
  linear map the power iteration found: a lower bound on that maximum, not a certificate.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from bench_zoo import ZOO, random_init
from torch import fx, nn

from lipcert import lipschitz_bound, lipschitz_lower_bound
from lipcert.lipschitz.activations import activation_slopes


class _Slopes(nn.Module):
    """A linear stand-in for an activation: ``h * d``, d per neuron in [lo, hi] (1 at the start)."""

    def __init__(self, lo: float, hi: float) -> None:
        super().__init__()
        self.lo, self.hi, self.d = lo, hi, None

    def forward(self, h):
        if self.d is None:
            self.d = torch.ones_like(h)
        return h * self.d


def _slope_model(model: nn.Module) -> tuple[fx.GraphModule, list[_Slopes]]:
    gm = fx.symbolic_trace(copy.deepcopy(model))
    modules = dict(gm.named_modules())
    stand_ins = []
    for node in list(gm.graph.nodes):
        slopes = activation_slopes(node, modules)  # the ranges lipschitz_bound uses (not widened to hold 0)
        if slopes is None:
            continue
        mod = _Slopes(*slopes)
        gm.add_module(f"slopes{len(stand_ins)}", mod)
        stand_ins.append(mod)
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(f"slopes{len(stand_ins) - 1}", (node.args[0],))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
    gm.recompile()
    return gm.double(), stand_ins


def _top(f, x, v, iters: int):
    for _ in range(iters):
        _, jv = torch.autograd.functional.jvp(f, x, v)
        _, v = torch.autograd.functional.vjp(f, x, jv)
        v = v / v.norm()
    return v, torch.autograd.functional.jvp(f, x, v)[1]


def slope_relaxed_norm(model: nn.Module, shape, rounds: int = 12, iters: int = 20) -> float:
    """A lower bound on the largest Jacobian norm over every choice of activation slopes in their ranges."""
    gm, stand_ins = _slope_model(model)
    x = torch.zeros(1, *shape, dtype=torch.float64)
    gm(x)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v, best = v / v.norm(), 0.0
    for _ in range(rounds):
        v, jv = _top(gm, x, v, iters)
        best = max(best, float(jv.norm()))
        u = jv / jv.norm()
        for s in stand_ins:
            s.d = s.d.detach().requires_grad_(True)
        xt = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad((gm(xt) * u).sum(), xt, create_graph=True)
        grads = torch.autograd.grad((g * v).sum(), [s.d for s in stand_ins])  # u^T J v is linear in each d
        for s, gd in zip(stand_ins, grads, strict=True):
            s.d = torch.where(gd > 0, s.hi, s.lo).to(gd).detach()
    return best


def _models():
    tests = Path(__file__).resolve().parents[1] / "tests"
    sys.path[:0] = [str(tests), str(tests / "lipschitz")]  # test_zoo imports the suite's dense_jacobian
    from test_zoo import ZOO as TEST_ZOO  # the small models of the suite's zoo tests

    for name, make in ZOO.items():
        yield name, random_init(make)
    for name, make in TEST_ZOO.items():
        yield f"test zoo: {name}", random_init(make)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args(argv)
    shape = (3, args.size, args.size)
    print(f"random-init plain models at {args.size}x{args.size}\n")
    print("| model | bound | realised lower | slope relaxation | bound / realised | relaxed / realised (best any "
          "slope-based bound can do) | bound / relaxed (room left) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, model in _models():
        bound = lipschitz_bound(model, shape, progress=False)
        x = torch.rand(4, *shape, generator=torch.Generator().manual_seed(1))
        lower = lipschitz_lower_bound(model, x, n_iter=30, n_random=2, ascent_steps=300)
        relaxed = slope_relaxed_norm(model.double(), shape)
        model.float()
        print(f"| {name} | {bound:.4g} | {lower:.4g} | {relaxed:.4g} | {bound / lower:.1f} | "
              f"{relaxed / lower:.1f} | {bound / relaxed:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
