import pytest
import torch

from lipcert.audit import audit
from lipcert.cli import main
from lipcert.data import DigitScenes
from lipcert.models import load_pretrained


@pytest.fixture(scope="module")
def lipnet_batches():
    test = DigitScenes("test", n=2, seed=0)
    x = torch.stack([test[i][0] for i in range(2)])
    y = torch.stack([test[i][1] for i in range(2)])
    return load_pretrained("digits-lipunet"), [(x[:1], y[:1]), (x[1:], y[1:])]


@pytest.mark.slow
def test_audit_finds_no_violation_on_the_shipped_lipnet(lipnet_batches):
    model, batches = lipnet_batches
    rep = audit(model, batches, [0.1, 0.5], steps=6)
    assert rep.violations == 0 and rep.lipschitz_source == "computed"
    assert len(rep.rows) == 4
    for avg in ("macro", "micro"):
        assert all(g >= -1e-12 for g in rep.gap[avg])
    assert "certified (macro)" in rep.markdown()
    assert set(rep.metrics) == {"pixel_accuracy", "recall", "iou", "miou"}
    for entry in rep.metrics.values():
        assert entry["violations"] == 0
        for avg in ("macro", "micro"):
            assert all(a >= c - 1e-12 for a, c in zip(entry["attacked"][avg], entry["certified"][avg], strict=True))


def test_a_too_small_constant_is_caught_on_iou_and_miou_too(lipnet_batches):
    model, batches = lipnet_batches
    rep = audit(model, batches, [1.0], lipschitz=0.02, steps=4)
    assert rep.metrics["iou"]["violations"] > 0 and rep.metrics["miou"]["violations"] > 0


@pytest.mark.slow
def test_audit_flags_a_too_small_declared_lipschitz_constant(lipnet_batches):
    model, batches = lipnet_batches
    rep = audit(model, batches, [0.5], lipschitz=0.05, steps=6)
    assert rep.violations > 0 and rep.lipschitz_source == "declared"


@pytest.mark.slow
def test_audit_cli_exits_non_zero_on_a_violation(tmp_path, capsys):
    args = [
        "audit",
        "--model",
        "digits-lipunet",
        "--limit",
        "1",
        "--eps",
        "0.5",
        "--steps",
        "4",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    assert main(args) == 0
    assert main([*args, "--lipschitz", "0.05"]) == 1
    assert "violation" in capsys.readouterr().out.lower()
