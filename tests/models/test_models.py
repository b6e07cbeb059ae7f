import pytest
import torch

from lipcert import LipcertError, lipschitz_bound
from lipcert.models import PRESETS, LipNet, LipUNet, build_model, export_plain, list_pretrained, load_pretrained


def test_presets_match_the_paper_configurations():
    assert PRESETS["S"] == [(32, 3), (64, 3), (128, 3)]
    assert PRESETS["M1"] == [(64, 5), (128, 5), (256, 5)]
    assert PRESETS["M2"] == PRESETS["M1"] + [(512, 5)]
    net = LipNet(19, in_channels=3, preset="S")
    convs = [m for m in net.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 9 and [c.stride[0] for c in convs].count(2) == 3


def test_export_after_a_training_step_and_build_from_config():
    net = LipUNet(4, widths=[(8, 1), (16, 1)], stem=8, gain=2.0)
    x = torch.rand(2, 3, 16, 16)
    net(x).sum().backward()  # parametrisations now hold tensors with autograd history
    exported = export_plain(net)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(exported(x), net(x), atol=1e-5, rtol=1e-5)
    rebuilt = build_model(net.config)
    assert type(rebuilt) is LipUNet and rebuilt.config == net.config
    assert lipschitz_bound(exported, (3, 16, 16)) == pytest.approx(2.0, rel=1e-3)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(preset="XL"),
        dict(widths=[(7, 1)]),
        dict(widths=[(8, 0)]),
        dict(parametrization="bjorck"),
        dict(mean=[0.5], std=[1.0]),
        dict(std=[0.0, 1.0, 1.0]),
    ],
)
def test_bad_configurations_raise(kwargs):
    with pytest.raises(LipcertError):
        LipNet(3, **kwargs)


def test_pretrained_registry():
    names = list_pretrained()
    with pytest.raises(LipcertError, match="Unknown pretrained"):
        load_pretrained("no-such-model")
    for name in names:
        model = load_pretrained(name)
        assert not model.training and "arch" in model.config
