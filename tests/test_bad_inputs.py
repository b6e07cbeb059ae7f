"""The bad-input catalogue: every wrong value raises a LipcertError subclass that names the problem.

Each case is (label, callable, words): the call must raise ``LipcertError`` (or a subclass) whose message
contains every word (the parameter's name or the user's term). The CLI cases must exit non-zero with
``lipcert: error:`` on stderr and no traceback.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import lipcert
import lipcert.audit
from lipcert import LipcertError
from lipcert.cli import main
from lipcert.compare import CompareConfig
from lipcert.data import Cityscapes, DigitScenes
from lipcert.data.transforms import EvalTransform, TrainTransform
from lipcert.models import InputNormalization, LipNet, LipUNet
from lipcert.smoothing import AbstainMetrics, certify_counts, segcertify, segcertify_from_samples
from lipcert.training import TrainConfig, train

Z = torch.tensor([[[[3.0, 1.0]], [[0.0, 0.0]]]])  # (1, 2, 1, 2)
T = torch.tensor([[[0, 0]]])
NET = nn.Conv2d(1, 2, 1, bias=False)
X = torch.rand(1, 1, 4, 4)
_ONE = lambda m, hw: 1.0  # noqa: E731 - a layer bound for the registration cases


def _cert(**kw):
    args = dict(logits=Z, eps=[0.1], metric="pixel_accuracy", target=T, lipschitz=1.0)
    args.update(kw)
    return lambda: lipcert.certify_logits(**args)


def _seg(**kw):
    args = dict(model=NET, x=torch.rand(1, 4, 4), sigma=0.25, n0=5, n=100, tau=0.6, alpha=0.01)
    args.update(kw)
    return lambda: segcertify(**args)


def _counts(**kw):
    args = dict(mode=np.zeros((2, 2), dtype=np.int64), counts=np.full((2, 2), 90), n=100, tau=0.6, alpha=0.01,
                sigma=0.25)  # fmt: skip
    args.update(kw)
    return lambda: certify_counts(**args)


def _metric_fed_k3_then_k4():
    acc = lipcert.CertifiedMetric("pixel_accuracy", [0.1], lipschitz=1.0)
    acc.update(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    acc.update(torch.randn(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


def _tiny_train(**cfg):
    net = LipUNet(11, widths=[(8, 1)], stem=8, gain=8.0)
    return lambda: train(net, DigitScenes("train", n=2), TrainConfig(batch_size=2, eval_every=0, **cfg), progress=False)


class _Dict(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 2, 1, bias=False)

    def forward(self, x):
        return {"out": self.c(x)}


def _nonfinite(value):
    c = nn.Conv2d(1, 2, 1, bias=False)
    with torch.no_grad():
        c.weight[0, 0] = value
    return c


def _incomplete_torchrun_env():
    import os
    from unittest import mock

    from lipcert.core.distributed import init_from_env

    with mock.patch.dict(os.environ, {"WORLD_SIZE": "2", "RANK": "0"}, clear=False):
        os.environ.pop("MASTER_ADDR", None)
        os.environ.pop("MASTER_PORT", None)
        init_from_env()


def _batch_below_processes():
    from unittest import mock

    from lipcert.training import loop

    with mock.patch.object(loop, "rank_and_size", return_value=(0, 4)):
        train(LipUNet(11, widths=[(8, 1)], stem=8), DigitScenes("train", n=6, size=32),
              TrainConfig(epochs=1, batch_size=4, eval_every=0), progress=False)  # fmt: skip


CASES = [
    # --- certify_logits / certify: types and ranges
    ("lipschitz bool", _cert(lipschitz=True), ["lipschitz"]),
    ("lipschitz string", _cert(lipschitz="1"), ["lipschitz"]),
    ("lipschitz None", _cert(lipschitz=None), ["Lipschitz constant is required"]),
    ("lipschitz nan", _cert(lipschitz=math.nan), ["lipschitz"]),
    ("lipschitz 0", _cert(lipschitz=0.0), ["lipschitz"]),
    ("lipschitz huge", _cert(lipschitz=1e160), ["lipschitz", "range"]),
    ("lipschitz tiny", _cert(lipschitz=1e-160), ["lipschitz", "range"]),
    ("eps string", _cert(eps="0.1"), ["eps"]),
    ("eps None", _cert(eps=None), ["eps"]),
    ("eps list with string", _cert(eps=[0.1, "a"]), ["eps"]),
    ("eps bool list", _cert(eps=[True]), ["eps"]),
    ("eps nan", _cert(eps=[math.nan]), ["eps"]),
    ("eps negative", _cert(eps=[-0.1]), ["eps"]),
    ("eps empty", _cert(eps=[]), ["eps"]),
    ("eps 2-D", _cert(eps=[[0.1]]), ["eps"]),
    ("eps overflows its square", _cert(eps=[1.35e154]), ["eps", "range"]),
    ("eps tiny", _cert(eps=[1e-160]), ["eps", "range"]),
    ("eps complex tensor", _cert(eps=torch.tensor([0.1j])), ["eps"]),
    ("ignore_index float", _cert(ignore_index=0.0), ["ignore_index"]),
    ("ignore_index string", _cert(ignore_index="255"), ["ignore_index"]),
    ("ignore_index huge", _cert(ignore_index=2**70), ["ignore_index"]),
    ("metric unknown", _cert(metric="dice"), ["metric"]),
    ("metric option", _cert(weights=[1, 2]), ["option"]),
    ("logits integer", _cert(logits=torch.ones(1, 2, 1, 2, dtype=torch.long)), ["logits"]),
    ("logits 3-D", _cert(logits=torch.ones(2, 1, 2)), ["logits", "shape"]),
    ("logits one class", _cert(logits=torch.ones(1, 1, 1, 2)), ["classes"]),
    ("logits nan", _cert(logits=torch.full((1, 2, 1, 2), math.nan)), ["finite"]),
    (
        "logits too large",
        _cert(logits=torch.tensor([[[[1e300, 0.0]], [[0.0, 0.0]]]], dtype=torch.float64)),
        ["2**161"],
    ),  # fmt: skip
    (
        "logits empty batch",
        _cert(logits=torch.ones(0, 2, 1, 2), target=torch.zeros(0, 1, 2, dtype=torch.long)),
        ["at least one image"],
    ),  # fmt: skip
    ("logits string array", _cert(logits=np.array([["a"]])), ["logits"]),
    ("target float", _cert(target=torch.zeros(1, 1, 2)), ["target"]),
    ("target shape", _cert(target=torch.zeros(1, 2, 2, dtype=torch.long)), ["target", "shape"]),
    ("target label out of range", _cert(target=torch.tensor([[[0, 7]]])), ["labels", "7"]),
    ("target missing", _cert(target=None), ["target"]),
    (
        "certified_radius level and drop",
        lambda: lipcert.certified_radius(Z, "pixel_accuracy", T, lipschitz=1.0, level=0.5, drop=0.1),
        ["level"],
    ),
    (
        "certified_radius level > 1",
        lambda: lipcert.certified_radius(Z, "pixel_accuracy", T, lipschitz=1.0, level=2.0),
        ["level"],
    ),
    ("certify not a module", lambda: lipcert.certify(lambda x: x, X, 0.1, "stability"), ["nn.Module"]),
    ("certify x without batch", lambda: lipcert.certify(NET, X[0], 0.1, "stability"), ["x", "batch dimension"]),
    ("certify x uint8", lambda: lipcert.certify(NET, (X * 255).byte(), 0.1, "stability"), ["x", "uint8"]),
    ("certify x in [0, 255]", lambda: lipcert.certify(NET, X * 255, 0.1, "stability"), ["x", "[0, 1]"]),
    ("certify x normalised", lambda: lipcert.certify(NET, (X - 0.5) / 0.2, 0.1, "stability"), ["x", "[0, 1]"]),
    ("certify x nan", lambda: lipcert.certify(NET, torch.full_like(X, math.nan), 0.1, "stability"), ["x", "finite"]),
    ("certify x numpy", lambda: lipcert.certify(NET, X.numpy(), 0.1, "stability"), ["x", "torch.Tensor"]),
    # --- accumulators
    ("metric K changes", _metric_fed_k3_then_k4, ["K=3", "K=4"]),
    (
        "metric compute before update",
        lambda: lipcert.CertifiedMetric("stability", 0.1, lipschitz=1.0).compute(),
        ["update"],
    ),
    (
        "metric ignore_index float",
        lambda: lipcert.CertifiedMetric("stability", 0.1, lipschitz=1.0, ignore_index=1.5),
        ["ignore_index"],
    ),
    (
        "metric average",
        lambda: lipcert.CertifiedMetric("stability", 0.1, lipschitz=1.0, average="mean"),
        ["average"],
    ),  # fmt: skip
    # --- Lipschitz bounds
    ("bound not a module", lambda: lipcert.lipschitz_bound(lambda x: x), ["nn.Module"]),
    ("bound input_shape length", lambda: lipcert.lipschitz_bound(NET, (4, 4)), ["input_shape"]),
    ("bound input_shape floats", lambda: lipcert.lipschitz_bound(NET, (1, 4.0, 4)), ["input_shape"]),
    ("bound dict output", lambda: lipcert.lipschitz_bound(_Dict(), (1, 4, 4)), ["dict", "out"]),
    ("bound inf weight", lambda: lipcert.lipschitz_bound(_nonfinite(math.inf), (1, 4, 4)), ["non-finite", "weight"]),
    ("bound nan weight", lambda: lipcert.lipschitz_bound(_nonfinite(math.nan), (1, 4, 4)), ["non-finite", "weight"]),
    ("lower bound nan images", lambda: lipcert.lipschitz_lower_bound(NET, torch.full_like(X, math.nan)), ["finite"]),
    ("normalisation nan gain", lambda: InputNormalization([0.5], [1.0], gain=math.nan), ["gain"]),
    ("normalisation zero std", lambda: InputNormalization([0.5], [0.0]), ["std"]),
    (
        "LipNet size not divisible",
        lambda: LipNet(3, widths=[(8, 1), (8, 1)]).eval()(torch.rand(1, 3, 18, 16)),
        ["multiples of 4"],
    ),  # fmt: skip
    # --- weighted and joint solvers
    (
        "weighted time_limit 0",
        lambda: lipcert.certify_weighted(Z, T, [1.0], [1.0, 1.0], lipschitz=1.0, method="exact", time_limit=0),
        ["time_limit"],
    ),
    (
        "weighted time_limit nan",
        lambda: lipcert.certify_weighted(Z, T, [1.0], [1.0, 1.0], lipschitz=1.0, method="exact", time_limit=math.nan),
        ["time_limit"],
    ),
    (
        "weighted weights strings",
        lambda: lipcert.certify_weighted(Z, T, [1.0], ["a", "b"], lipschitz=1.0),
        ["weights"],
    ),  # fmt: skip
    (
        "weighted wrong class count",
        lambda: lipcert.certify_weighted(Z, T, [1.0], [1.0, 1.0, 1.0], lipschitz=1.0),
        ["class weights"],
    ),  # fmt: skip
    (
        "weighted negative weights",
        lambda: lipcert.certify_weighted(Z, T, [1.0], [-1.0, 1.0], lipschitz=1.0),
        ["weights"],
    ),  # fmt: skip
    (
        "joint time_limit negative",
        lambda: lipcert.joint_miou(Z, T, [0.1], lipschitz=1.0, time_limit=-1),
        ["time_limit"],
    ),  # fmt: skip
    (
        "joint max_pixels float",
        lambda: lipcert.joint_miou(Z, T, [0.1], lipschitz=1.0, max_pixels=2.5),
        ["max_pixels"],
    ),  # fmt: skip
    # --- SegCertify
    ("segcertify sigma nan", _seg(sigma=math.nan), ["sigma"]),
    ("segcertify sigma negative", _seg(sigma=-0.25), ["sigma"]),
    ("segcertify images nan", _seg(x=torch.full((1, 4, 4), math.nan)), ["finite"]),
    ("segcertify numpy images", _seg(x=np.zeros((1, 4, 4))), ["torch.Tensor"]),
    ("segcertify n float", _seg(n=100.5), ["n"]),
    ("segcertify n0 zero", _seg(n0=0), ["n0"]),
    ("segcertify k zero", _seg(k=0), ["k"]),
    ("segcertify batch_size zero", _seg(batch_size=0), ["batch_size"]),
    ("segcertify tau 1", _seg(tau=1.0), ["tau"]),
    ("segcertify alpha 2", _seg(alpha=2.0), ["alpha"]),
    ("segcertify correction", _seg(correction="sidak"), ["correction"]),
    ("segcertify zero pixels", _seg(x=torch.rand(1, 0, 4)), ["pixels"]),
    ("segcertify abstain is a class", _seg(abstain=0), ["abstain"]),
    ("counts above n", _counts(counts=np.full((2, 2), 101)), ["counts"]),
    ("counts alpha 2", _counts(alpha=2.0), ["alpha"]),
    ("counts negative sigma", _counts(sigma=-0.1), ["sigma"]),
    ("counts float mode", _counts(mode=np.zeros((2, 2))), ["mode"]),
    (
        "samples abstain is a class",
        lambda: segcertify_from_samples(np.zeros((20, 2), dtype=int), 5, 0.6, 0.01, 0.25, abstain=0),
        ["abstain"],
    ),  # fmt: skip
    (
        "samples n0 an array",
        lambda: segcertify_from_samples(np.zeros((20, 2), dtype=int), np.zeros((5, 2), dtype=int), 0.6, 0.01, 0.25),
        ["n0"],
    ),
    ("samples n0 a float", lambda: segcertify_from_samples(np.zeros((20, 2), dtype=int), 5.5, 0.6, 0.01, 0.25), ["n0"]),
    # --- data
    ("digits size 0", lambda: DigitScenes(size=0), ["size"]),
    ("digits negative seed", lambda: DigitScenes(seed=-1), ["seed"]),
    ("digits n float", lambda: DigitScenes(n=2.5), ["n"]),
    ("eval transform size 0", lambda: EvalTransform((0, 4)), ["size"]),
    ("train transform negative seed", lambda: TrainTransform((8, 8), seed=-3), ["seed"]),
    # --- training
    ("train 0 epochs", lambda: TrainConfig(epochs=0), ["epochs"]),
    ("train tau 0", lambda: TrainConfig(tau=0.0), ["tau"]),
    ("train hinge_correct_only a string", lambda: TrainConfig(hinge_correct_only="yes"), ["hinge_correct_only"]),
    ("train negative noise", lambda: TrainConfig(noise_sigma=-0.1), ["noise_sigma"]),
    ("train unknown loss", lambda: TrainConfig(loss="dice"), ["loss"]),
    ("train nan lr", lambda: TrainConfig(lr=math.nan), ["lr"]),
    ("train class weights length", _tiny_train(epochs=1, class_weights=[1.0, 1.0]), ["class_weights"]),
    ("train non-finite loss", _tiny_train(epochs=1, tau=1e39), ["loss"]),
    ("train negative margin", lambda: TrainConfig(loss="margin_ce", margin=-1.0), ["margin"]),
    ("train float margin_warmup", lambda: TrainConfig(margin_warmup=2.5), ["margin_warmup"]),
    ("train hinge quantile 0", lambda: TrainConfig(loss="margin_hinge", hinge_quantile=0.0), ["hinge_quantile"]),
    ("train hinge quantile > 1", lambda: TrainConfig(loss="margin_hinge", hinge_quantile=1.5), ["hinge_quantile"]),
    ("train negative hinge weight", lambda: TrainConfig(hinge_weight=-1.0), ["hinge_weight"]),
    (
        "metric lipschitz_source",
        lambda: lipcert.CertifiedMetric("stability", 0.1, lipschitz=1.0, lipschitz_source=3),
        ["lipschitz_source"],
    ),  # fmt: skip
    ("bound bounds not a dict", lambda: lipcert.lipschitz_bound(NET, (1, 4, 4), bounds=[1]), ["bounds"]),
    ("metric unknown option", lambda: lipcert.CertifiedMetric("iou", 0.1, lipschitz=1.0, smooth=2), ["smooth"]),
    ("abstain unknown option", lambda: AbstainMetrics(3, weights=[1, 1, 1]), ["weights"]),
    ("cityscapes labels kind", lambda: Cityscapes(".", split="val", labels="trainIds"), ["labels"]),
    ("torchrun env incomplete", _incomplete_torchrun_env, ["MASTER_ADDR", "torchrun"]),
    ("train global batch below processes", _batch_below_processes, ["batch_size", "processes"]),
    (
        "bound bounds bad key",
        lambda: lipcert.lipschitz_bound(NET, (1, 4, 4), bounds={"Conv2d": _ONE}),
        ["register_layer_bound"],
    ),  # fmt: skip
    (
        "bound bounds override built-in",
        lambda: lipcert.lipschitz_bound(NET, (1, 4, 4), bounds={nn.Conv2d: _ONE}),
        ["override=True"],
    ),  # fmt: skip
    ("abstain metrics abstain in range", lambda: AbstainMetrics(3, abstain=1), ["abstain"]),
    (
        "abstain metrics labels out of range",
        lambda: AbstainMetrics(3).update(np.full((1, 2, 2), 7), np.zeros((1, 2, 2), int)),
        ["labels"],
    ),  # fmt: skip
    # --- comparison settings
    ("compare foreground negative", lambda: CompareConfig(foreground=[-1]), ["foreground"]),
    ("compare alpha 2", lambda: CompareConfig(alpha=2.0), ["alpha"]),
    ("compare n0 zero", lambda: CompareConfig(n0=[0]), ["n0"]),
    ("compare eps negative", lambda: CompareConfig(eps=[-1.0]), ["eps"]),
    ("compare limit 0", lambda: CompareConfig(limit=0), ["limit"]),
    # --- audit
    ("audit bare tensors", lambda: lipcert.audit.audit(NET, [X], [0.1], lipschitz=1.0), ["(images, labels)"]),
    (
        "audit labels out of range",
        lambda: lipcert.audit.audit(NET, [(X, torch.full((1, 4, 4), 9))], [0.1], lipschitz=1.0),
        ["labels"],
    ),
    (
        "audit lipschitz bool",
        lambda: lipcert.audit.audit(NET, [(X, torch.zeros(1, 4, 4, dtype=torch.long))], [0.1], lipschitz=True),
        ["lipschitz"],
    ),  # fmt: skip
]


@pytest.mark.parametrize("label, call, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_naming_the_problem(label, call, words):
    with pytest.raises(LipcertError) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word.lower() in message.lower(), f"{label}: {word!r} not in {message!r}"


def test_a_subclass_that_overrides_forward_is_unknown_whatever_it_inherits():
    class Times10(nn.Identity):
        def forward(self, x):
            return 10 * x

    with pytest.raises(lipcert.LipschitzBoundError, match="Times10.*overrides forward"):
        lipcert.lipschitz_bound(nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), Times10()), (1, 4, 4))


def test_forward_hooks_are_refused():
    conv = nn.Conv2d(1, 2, 1, bias=False)
    handle = conv.register_forward_hook(lambda m, i, o: 10 * o)
    try:
        with pytest.raises(lipcert.LipschitzBoundError, match="hooks"):
            lipcert.lipschitz_bound(nn.Sequential(conv), (1, 4, 4))
    finally:
        handle.remove()


CLI_CASES = [
    ["demo", "--alpha", "2"],
    ["demo", "--eps", "-1"],
    ["demo", "--eps", "nan"],
    ["demo", "--eps", "abc"],
    ["demo", "--limit", "0"],
    ["demo", "--n0", "0"],
    ["demo", "--sigma", "-0.25"],
    ["demo", "--threads", "0"],
    ["demo", "--overhead-size", "-1", "4"],
    ["demo", "--lip", "no-such-model"],
    ["demo", "--size", "64", "32"],
    ["demo", "--size", "1", "2", "3"],
    ["demo", "--twin", "missing.pt"],
    ["demo", "--out", "/etc/passwd/sub"],
    ["compare", "--dataset", "pets"],
    ["compare", "--dataset", "cityscapes", "--root", "/no/such/folder"],
    ["certify", "--model", "missing.pt"],
    ["certify", "--model", "digits-lipunet", "--batch-size", "0"],
    ["certify", "--model", "digits-lipunet", "--lipschitz", "0"],
    ["certify", "--model", "digits-lipunet", "--level", "2"],
    ["certify", "--model", "digits-lipunet", "--metric", "dice"],
    ["audit", "--model", "digits-lipunet", "--steps", "0"],
    ["audit", "--model", "digits-lipunet", "--seed", "-1"],
    ["train", "--recipe", "no-such-recipe", "--out", "x.pt"],
    ["train", "--recipe", "digits-lipunet", "--out", "x.pt", "--epochs", "0"],
    ["train", "--recipe", "pets-lipnet", "--out", "x.pt"],
]


@pytest.mark.parametrize("argv", CLI_CASES, ids=[" ".join(a) for a in CLI_CASES])
def test_cli_user_errors_exit_nonzero_with_the_error_line(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)  # an exception escaping here would be a traceback for the user: the test fails
    except SystemExit as exc:  # argparse's own exit
        code = exc.code
    err = capsys.readouterr().err
    assert code not in (0, None)
    assert "lipcert: error:" in err


@pytest.mark.parametrize("argv", [CLI_CASES[0], CLI_CASES[14]], ids=["argparse", "command"])
def test_the_installed_entry_point_prints_no_traceback(argv, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lipcert.cli", *argv], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 2, proc.stdout
    assert "lipcert: error:" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    "call, word",
    [
        (_cert(eps=10**400), "eps"),
        (_cert(eps=[10**400]), "eps"),
        (_cert(lipschitz=10**400), "lipschitz"),
        (_seg(n=10**30), "n"),
        (_seg(n0=10**30), "n0"),
        (_cert(ignore_index=10**30), "ignore_index"),
    ],
    ids=["eps huge int", "eps list huge int", "L huge int", "n huge", "n0 huge", "ignore_index huge"],
)
def test_huge_integers_are_refused_naming_the_parameter(call, word):
    with pytest.raises(LipcertError, match=word):
        call()


def test_a_model_that_cannot_run_on_input_shape_is_refused_naming_it():
    net = nn.Sequential(nn.Conv2d(3, 2, 1)).double()
    with pytest.raises(lipcert.LipschitzBoundError, match="input_shape"):
        lipcert.lipschitz_bound(net, (2, 4, 4))
    assert lipcert.lipschitz_bound(net, (3, 4, 4)) > 0  # a float64 model is probed in float64
