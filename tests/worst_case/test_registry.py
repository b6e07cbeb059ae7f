"""The metric registry drives certify, the accumulators and the CLI; one function labels certificates."""

import numpy as np
import pytest
import torch

import lipcert
from lipcert import CertifiedMetric, LipcertError, certify_logits
from lipcert.core.certificate import Status
from lipcert.worst_case.registry import METRICS, REGISTRY, build_certificate, metric_spec


def _batch(seed=0, b=2, k=3, h=4, w=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, h, w, generator=g, dtype=torch.float64), torch.randint(0, k, (b, h, w), generator=g)


def test_registry_is_the_public_metric_list_and_the_cli_choices():
    assert len(REGISTRY) >= 6 and lipcert.METRICS == METRICS == tuple(REGISTRY)
    from lipcert.cli import build_parser

    action = next(
        a for a in build_parser()._subparsers._group_actions[0].choices["certify"]._actions if a.dest == "metric"
    )
    assert tuple(action.choices) == METRICS


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("average", ["macro", "micro"])
def test_every_certificate_carries_its_registry_row(metric, average):
    logits, target = _batch()
    spec = metric_spec(metric)
    cert = certify_logits(logits, [0.0, 0.3], metric, target, lipschitz=2.0)
    assert (cert.solver, cert.status) == spec.solver("none")
    assert cert.higher_is_better == spec.higher_is_better
    assert cert.worst.ndim == (3 if spec.per_class else 2)
    acc = CertifiedMetric(metric, [0.0, 0.3], lipschitz=2.0, average=average)
    acc.update(logits, target)
    pooled = acc.compute()
    assert (pooled.solver, pooled.status, pooled.average) == (*spec.solver(average), average)
    assert pooled.worst.ndim == (2 if spec.per_class else 1)


def test_needs_target_is_enforced_from_the_registry():
    logits, _ = _batch()
    for metric, spec in REGISTRY.items():
        if spec.needs_target:
            with pytest.raises(LipcertError, match="needs `target`"):
                certify_logits(logits, 0.1, metric, lipschitz=1.0)
        else:
            assert certify_logits(logits, 0.1, metric, lipschitz=1.0).worst.shape == (2, 1)


def test_build_certificate_never_strengthens_a_status_and_refuses_unlabelled_objectives():
    common = dict(
        eps=np.array([0.1]),
        worst=np.array([0.5]),
        clean=np.array(1.0),
        naive=None,
        lipschitz=1.0,
        lipschitz_source="declared",
    )
    # miou is a bound in the registry: asking for "exact" keeps the bound
    assert build_certificate("miou", "micro", status="exact", **common).status is Status.BOUND
    # an exact metric may be weakened (e.g. a time limit), and the user is warned
    with pytest.warns(lipcert.LipcertWarning, match="time limit"):
        assert build_certificate("iou", "none", status="time_limit", **common).status is Status.TIME_LIMIT
    with pytest.raises(LipcertError, match="metric"):
        build_certificate("my_objective", "none", **common)
    cert = build_certificate("my_objective", "none", solver="mine", status="bound", higher_is_better=True, **common)
    assert cert.status == "bound" and str(cert.status) == "bound" and f"{cert.status}" == "bound"
    with pytest.raises(LipcertError, match="average"):
        build_certificate("miou", "pooled", **common)


def test_to_dict_is_json_ready_with_nan_as_none_and_keeps_every_label():
    import json

    logits, target = _batch()
    cert = certify_logits(logits, [0.0, 0.3], "recall", target, lipschitz=2.0)
    d = json.loads(json.dumps(cert.to_dict()))  # plain JSON, no NaN tokens needed
    assert d["metric"] == "recall" and d["status"] == "exact" and d["solver"] == cert.solver
    assert d["eps"] == [0.0, 0.3] and d["lipschitz"] == 2.0 and d["average"] == "none"
    worst = np.asarray(cert.worst)
    got = np.array([[[np.nan if v is None else v for v in row] for row in img] for img in d["worst"]])
    np.testing.assert_array_equal(got, worst)  # NaN (undefined classes) written as null, numbers kept exactly
    assert "pixel_radius" not in d  # the radius map is never serialised
