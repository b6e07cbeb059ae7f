import numpy as np
import pytest
import torch

from lipcert import LipcertError
from lipcert.attacks import APGD, SEA, MarginAttack, check_within, class_weights_from_labels, pixel_accuracy
from lipcert.attacks.sea import confusions_of, worst_case_miou
from lipcert.data import DigitScenes
from lipcert.models import LipUNet
from lipcert.training import TrainConfig, train


@pytest.fixture(scope="module")
def plain_model_and_batch():
    """A small unconstrained digit-scene model (a few seconds of training) and 4 test scenes."""
    torch.manual_seed(0)
    net = LipUNet(11, widths=[(16, 1), (32, 1)], stem=16, parametrization="plain")
    train(
        net,
        DigitScenes("train", size=32, n=128, seed=2),
        TrainConfig(epochs=10, batch_size=16, tau=1.0, eval_every=0),
        progress=False,
    )
    net.eval()
    test = DigitScenes("test", size=32, n=4, seed=2)
    x = torch.stack([test[i][0] for i in range(4)])
    y = torch.stack([test[i][1] for i in range(4)])
    return net, x, y


def _acc(net, x, y):
    with torch.no_grad():
        return float(pixel_accuracy(net(x), y).mean())


ATTACKS = {
    "apgd_mce": lambda net, eps: APGD(net, eps, "l2", "mce", steps=30),
    "apgd_mce_bal": lambda net, eps: APGD(net, eps, "l2", "mce_bal", steps=30),
    "apgd_js": lambda net, eps: APGD(net, eps, "l2", "js", steps=30),
    "margin": lambda net, eps: MarginAttack(net, eps, steps=30),
    "sea": lambda net, eps: SEA(net, eps, "l2", steps=30),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_each_attack_drives_accuracy_far_down_within_eps(plain_model_and_batch, name):
    net, x, y = plain_model_and_batch
    clean = _acc(net, x, y)
    adv = ATTACKS[name](net.train(), 4.0)(x, y)  # the model is put in eval mode and restored
    assert net.training
    net.eval()
    assert _acc(net, adv, y) < 0.5 * clean
    assert bool(((adv - x).flatten(1).norm(dim=1) <= 4.0 * (1 + 1e-5)).all())
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0


@pytest.mark.slow
def test_linf_apgd_stays_in_the_box(plain_model_and_batch):
    net, x, y = plain_model_and_batch
    adv = APGD(net, 8 / 255, "linf", "mce", steps=20)(x, y)
    assert float((adv - x).abs().max()) <= 8 / 255 + 1e-6
    assert _acc(net, adv, y) < _acc(net, x, y)


@pytest.mark.slow
def test_radius_reduction_helps_or_ties_at_equal_iterations(plain_model_and_batch):
    net, x, y = plain_model_and_batch
    with_red, without = [], []
    for loss in ("mce", "mce_bal", "js"):
        with_red.append(_acc(net, APGD(net, 1.0, "l2", loss, steps=20, reduction=True, seed=0)(x, y), y))
        without.append(_acc(net, APGD(net, 1.0, "l2", loss, steps=20, reduction=False, seed=0)(x, y), y))
    assert np.mean(with_red) <= np.mean(without) + 1e-3


def test_check_within_rejects_a_perturbation_outside_the_ball():
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(LipcertError):
        check_within(x, x + 0.6, 1.0, "l2")
    check_within(x, x + 0.5, 1.0, "l2")


def test_balanced_weights_are_inverse_frequency():
    labels = torch.tensor([[[0, 0, 0, 1], [255, 0, 1, 2]]])
    w = class_weights_from_labels(labels, 4)
    assert w[3] == 0 and w[2] > w[1] > w[0] and torch.isclose(w.sum(), torch.tensor(1.0))


def test_greedy_worst_case_miou_is_below_every_single_attack():
    rng = np.random.default_rng(0)
    conf = rng.integers(0, 20, size=(3, 6, 4, 4))
    value, choice = worst_case_miou(conf)
    from lipcert.worst_case.confusion import iou_from_confusion

    singles = [np.nanmean(iou_from_confusion(conf[a].sum(0))) for a in range(3)]
    assert value <= min(singles) + 1e-12 and choice.shape == (6,)


@pytest.mark.slow
def test_confusions_of_matches_pixel_accuracy(plain_model_and_batch):
    net, x, y = plain_model_and_batch
    conf = confusions_of(net, [x], y, 11)
    acc = np.trace(conf[0], axis1=1, axis2=2) / conf[0].sum((1, 2))
    with torch.no_grad():
        np.testing.assert_allclose(acc, pixel_accuracy(net(x), y).numpy())
