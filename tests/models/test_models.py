import pytest
import torch

from lipcert import LipcertError, lipschitz_bound
from lipcert.models import PRESETS, LipNet, LipUNet, build_model, export_plain, list_pretrained, load_pretrained


def test_presets_match_the_paper_configurations():
    assert PRESETS["S"] == [(32, 3), (64, 3), (128, 3)]
    assert PRESETS["M1"] == [(64, 5), (128, 5), (256, 5)]
    assert PRESETS["M2"] == PRESETS["M1"] + [(512, 5)]
    for name in ("S", "M1"):  # the built encoder follows its preset: widths, depths, one stride 2 per stage
        net = LipNet(19, in_channels=3, preset=name)
        convs = [m for m in net.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
        expected = [w for w, depth in PRESETS[name] for _ in range(depth)]
        assert [c.out_channels for c in convs] == expected
        assert [c.stride[0] for c in convs].count(2) == len(PRESETS[name])


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
    assert {"digits-lipunet", "digits-twin-sigma025"} <= set(names)  # never passes on an empty registry
    with pytest.raises(LipcertError, match="Unknown pretrained"):
        load_pretrained("no-such-model")
    for name in names:
        model = load_pretrained(name)
        assert not model.training and "arch" in model.config


def test_checkpoints_never_unpickle_code(tmp_path):
    import os

    import torch

    from lipcert import LipcertError
    from lipcert.models import load_checkpoint
    from lipcert.training import TrainConfig, train

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"config": {}, "state_dict": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(LipcertError, match="not a lipcert checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    state = {"model": Evil(), "opt": {}, "sched": {}, "history": [], "epoch": 1, "seconds": 0}
    torch.save(state, tmp_path / "r.pt.state")
    from lipcert.data import DigitScenes
    from lipcert.models import LipUNet

    with pytest.raises(LipcertError, match="not a lipcert checkpoint"):
        train(LipUNet(11, widths=[(8, 1)], stem=8), DigitScenes(n=2), TrainConfig(epochs=1, batch_size=2, eval_every=0),
              out=str(tmp_path / "r.pt"), resume=True, progress=False)  # fmt: skip
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"garbage", None])
def test_garbage_checkpoints_are_refused_in_one_sentence(tmp_path, content):
    import torch

    from lipcert import LipcertError
    from lipcert.models import load_checkpoint

    path = tmp_path / "c.pt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, path)  # no config
    else:
        path.write_bytes(content)
    with pytest.raises(LipcertError, match=f"{path} is not a lipcert checkpoint") as info:
        load_checkpoint(path)
    assert "weights_only=False" not in str(info.value)
