import numpy as np
import pytest
import torch
from deel import torchlip
from hypothesis import given
from hypothesis import strategies as st

from lipcert import LipcertError, lipschitz_bound
from lipcert.data import DigitScenes
from lipcert.models import LipUNet, load_checkpoint
from lipcert.training import TrainConfig, evaluate, recalibrate_centering, train


@pytest.fixture(scope="module")
def scenes():
    return DigitScenes("train", size=32, n=16, seed=1)


def _net(**kw):
    torch.manual_seed(0)
    return LipUNet(11, widths=[(8, 1), (16, 1)], stem=8, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["tau_ce", "hkr"])
def test_short_training_reduces_the_loss_and_checkpoints_round_trip(scenes, tmp_path, loss):
    net = _net(gain=8.0)
    cfg = TrainConfig(
        epochs=6, batch_size=8, lr=3e-3, loss=loss, tau=8.0, class_weights=[0.1] + [1.0] * 10, eval_every=0, seed=0
    )
    res = train(net, scenes, cfg, out=str(tmp_path / "m.pt"), progress=False, meta={"test": True})
    losses = [h["loss"] for h in res["history"]]
    assert losses[-1] < losses[0]
    model = load_checkpoint(tmp_path / "m.pt")
    assert model.meta["test"] is True and model.meta["train_config"]["loss"] == loss
    assert lipschitz_bound(model, (3, 32, 32)) == pytest.approx(8.0, rel=1e-3)


@pytest.mark.slow
def test_training_is_resumable_and_seeded(scenes, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=8, eval_every=0, seed=3, noise_sigma=0.1)
    a = train(_net(), scenes, cfg, out=str(tmp_path / "a.pt"), progress=False)
    train(_net(), scenes, cfg, out=str(tmp_path / "b.pt"), progress=False, stop_after=1)  # interrupted
    b = train(_net(), scenes, cfg, out=str(tmp_path / "b.pt"), progress=False, resume=True)
    assert len(b["history"]) == 2
    np.testing.assert_allclose(a["history"][-1]["loss"], b["history"][-1]["loss"], rtol=1e-4)


def test_noise_augmented_twin_and_evaluation(scenes):
    twin = _net(parametrization="plain")
    cfg = TrainConfig(epochs=1, batch_size=8, tau=1.0, noise_sigma=0.25, eval_every=1, seed=0)
    eval_set = DigitScenes("test", size=32, n=4)
    res = train(twin, scenes, cfg, eval_set=eval_set, progress=False)
    ev = res["history"][-1]["eval"]
    assert "certified_pixel_accuracy_macro" not in ev  # a plain twin has no certificate
    # the reported accuracy is the pooled accuracy of the trained twin's predictions, recomputed here
    x = torch.stack([eval_set[i][0] for i in range(4)])
    y = torch.stack([eval_set[i][1] for i in range(4)])
    with torch.no_grad():
        pred = twin.eval()(x).argmax(1)
    valid = y != 255
    assert ev["pixel_accuracy_micro"] == pytest.approx(float(((pred == y) & valid).sum() / valid.sum()))


def test_recalibrated_centering_equals_the_data_mean(scenes):
    net = _net().eval()
    recalibrate_centering(net, scenes, n_images=16, batch_size=16)
    first = next(m for m in net.modules() if isinstance(m, torchlip.BatchCentering))
    seen = []
    hook = first.register_forward_pre_hook(lambda mod, args: seen.append(args[0].mean((0, 2, 3))))
    with torch.no_grad():
        net(torch.stack([scenes[i][0] for i in range(16)]))
    hook.remove()
    torch.testing.assert_close(first._get_mean(training=False), seen[0], atol=1e-5, rtol=1e-4)
    assert not net.training


def test_unknown_loss_is_refused(scenes):
    with pytest.raises(LipcertError):
        train(_net(), scenes, TrainConfig(epochs=1, loss="dice", eval_every=0), progress=False)


def test_evaluate_reports_pooled_miou(scenes):
    ev = evaluate(_net(gain=8.0).eval(), scenes, eps=0.1, limit=4)
    assert set(ev) >= {"pixel_accuracy_micro", "miou_pooled", "certified_pixel_accuracy_macro", "lipschitz"}


def test_every_recipe_builds_its_model_and_names_its_data():
    from lipcert.models import build_model
    from lipcert.training.recipes import RECIPES, get_recipe

    for name in RECIPES:
        recipe = get_recipe(name, epochs=1)
        assert recipe["train"].epochs == 1 and recipe["data"]["dataset"] in ("digits", "pets", "cityscapes")
        model = build_model(recipe["model"])
        assert model.config["num_classes"] in (3, 11, 19)
    with pytest.raises(LipcertError):
        get_recipe("no-such-recipe")


@pytest.mark.slow
def test_train_cli_on_a_short_digit_run(tmp_path):
    from lipcert.cli import main

    out = tmp_path / "cli.pt"
    assert (
        main(
            [
                "train",
                "--recipe",
                "digits-twin-sigma025",
                "--out",
                str(out),
                "--epochs",
                "1",
                "--n-train",
                "8",
                "--no-progress",
            ]
        )
        == 0
    )
    model = load_checkpoint(out)
    assert model.meta["recipe"] == "digits-twin-sigma025" and "commit" in model.meta and model.meta["seconds"] > 0


@pytest.mark.slow
def test_pgd_adversarial_training_and_pir_at_initialisation(scenes, tmp_path):
    twin = _net(parametrization="plain")
    cfg = TrainConfig(epochs=3, batch_size=8, tau=1.0, adversarial="pgd", adv_eps=0.5, adv_steps=2, eval_every=0)
    res = train(twin, scenes, cfg, out=str(tmp_path / "at.pt"), progress=False)
    assert res["history"][-1]["loss"] < res["history"][0]["loss"]
    robust = load_checkpoint(tmp_path / "at.pt")
    fresh = _net(parametrization="plain")
    pir = TrainConfig(
        epochs=1,
        batch_size=8,
        tau=1.0,
        adversarial="pgd",
        adv_steps=1,
        eval_every=0,
        lr=1e-9,
        init_from=str(tmp_path / "at.pt"),
    )
    train(fresh, scenes, pir, progress=False)
    convs = [k for k, v in robust.state_dict().items() if k.endswith("weight") and v.ndim == 4]
    assert convs
    for k in convs:  # initialised from the robust checkpoint (lr ~ 0 keeps the conv weights)
        torch.testing.assert_close(fresh.state_dict()[k], robust.state_dict()[k], atol=1e-6, rtol=1e-5)
    with pytest.raises(LipcertError):
        train(_net(parametrization="plain"), scenes, TrainConfig(epochs=1, adversarial="fgsm"), progress=False)


def test_margin_ce_lowers_the_true_logit_by_kappa_value_and_gradient():
    from lipcert.training.losses import loss_function as _loss_fn

    cfg = TrainConfig(loss="margin_ce", tau=2.0, margin=1.5)
    loss_fn = _loss_fn(cfg, ignore_index=255)
    z = torch.tensor([[[[2.0]], [[1.0]], [[0.0]]]], requires_grad=True)  # (1, 3, 1, 1)
    y = torch.tensor([[[0]]])
    loss = loss_fn(z, y, 1.5)
    shifted = torch.tensor([2.0 - 1.5, 1.0, 0.0]) * 2.0
    expected = -torch.log_softmax(shifted, 0)[0] / 2.0
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)
    (grad,) = torch.autograd.grad(loss, z)
    p = torch.softmax(shifted, 0)
    np.testing.assert_allclose(grad.flatten().numpy(), (p - torch.tensor([1.0, 0.0, 0.0])).numpy(), rtol=1e-5)
    # kappa keeps the loss up until the margin exceeds it
    assert float(loss_fn(z, y, 0.0).detach()) < float(loss.detach())
    ignored = loss_fn(z, torch.tensor([[[255]]]), 1.5)
    assert torch.isnan(ignored) or float(ignored) == 0.0


@given(st.integers(0, 2**31 - 1), st.floats(0.05, 1.0), st.floats(0.0, 3.0), st.booleans())
def test_lowest_margin_hinge_equals_a_per_class_sort_and_pushes_the_cheapest_pixels(seed, quantile, kappa, correct):
    from lipcert.training.losses import lowest_margin_hinge

    rng = np.random.default_rng(seed)
    z = torch.tensor(rng.normal(size=(2, 3, 3, 4)) * 2, requires_grad=True)
    y = torch.tensor(rng.choice([0, 1, 2, 255], size=(2, 3, 4), p=[0.5, 0.2, 0.2, 0.1]))
    got = lowest_margin_hinge(z, y, kappa, quantile, 255, correct_only=correct)
    # reference: per class, sort the margins of its pixels, the lowest fraction pays relu(kappa - m)
    zn, yn = z.detach().numpy().transpose(0, 2, 3, 1).reshape(-1, 3), y.numpy().reshape(-1)
    terms = []
    for c in range(3):
        rows = zn[yn == c]
        if len(rows) == 0:
            continue
        others = np.where(np.eye(3, dtype=bool)[c], -np.inf, rows).max(1)
        m = rows[:, c] - others
        m = m[m > 0] if correct else m  # correct_only: the correctly classified pixels of the class
        if len(m) == 0:
            continue
        m = np.sort(m)[: max(1, int(round(quantile * len(m))))]
        terms.append(np.maximum(kappa - m, 0).mean())
    assert float(got) == pytest.approx(np.mean(terms) if terms else 0.0, rel=1e-9, abs=1e-12)
    got.backward()
    if float(got) > 0:  # the gradient raises the true logit of some paying pixel
        true_grad = z.grad.gather(1, torch.where(y == 255, 0, y)[:, None])[:, 0][y != 255]
        assert (true_grad < 0).any()
    # margins above kappa everywhere: nothing to pay
    big = torch.zeros(1, 2, 1, 2)
    big[0, 0] = kappa + 1.0
    assert float(lowest_margin_hinge(big, torch.zeros(1, 1, 2, dtype=torch.long), kappa, quantile, 255)) == 0.0


def test_margin_hinge_trains_and_refuses_nothing_valid(scenes):
    net = _net(gain=8.0)
    cfg = TrainConfig(epochs=1, batch_size=4, loss="margin_hinge", margin=1.0, hinge_quantile=0.5, eval_every=0)
    res = train(net, scenes, cfg, progress=False)
    assert np.isfinite(res["history"][0]["loss"])
    from lipcert.training.losses import lowest_margin_hinge

    z = torch.zeros(1, 2, 1, 1, requires_grad=True)
    assert float(lowest_margin_hinge(z, torch.full((1, 1, 1), 255), 1.0, 0.5, 255)) == 0.0


@pytest.mark.slow
def test_margin_ce_training_raises_the_certified_digit_recall_over_tau_ce(scenes):
    from lipcert import CertifiedMetric

    def certified_recall(loss, **kw):
        net = _net(gain=8.0)
        cfg = TrainConfig(epochs=8, batch_size=8, lr=3e-3, loss=loss, tau=4.0, class_weights=[0.1] + [1.0] * 10,
                          eval_every=0, seed=0, **kw)  # fmt: skip
        train(net, scenes, cfg, progress=False)
        x = torch.stack([scenes[i][0] for i in range(len(scenes))])
        y = torch.stack([scenes[i][1] for i in range(len(scenes))])
        metric = CertifiedMetric("recall", [0.02], lipschitz=lipschitz_bound(net, (3, 32, 32)))
        with torch.no_grad():
            metric.update(net.eval()(x), y)
        cert = metric.compute()
        return float(np.nanmean(cert.worst[0, 1:])), float(np.nanmean(cert.clean[1:]))

    base_cert, base_clean = certified_recall("tau_ce")
    margin_cert, margin_clean = certified_recall("margin_ce", margin=1.0, margin_warmup=2)
    assert margin_cert > base_cert
    assert margin_clean >= base_clean - 0.15  # at a comparable clean recall
