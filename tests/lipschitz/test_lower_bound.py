"""The realised lower bound: every candidate is a ratio the model produced; the pair search and its box."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lipcert import LipcertError, lipschitz_bound, lipschitz_lower_bound


class _Square(nn.Module):
    """``x^2`` per pixel: slope 2 x, so 2-Lipschitz on [0, 1] and not Lipschitz on the whole line."""

    def forward(self, x):
        return x * x


def test_the_box_keeps_the_pair_search_among_images():
    x = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    inside = lipschitz_lower_bound(_Square(), x, n_iter=0, n_random=0, ascent_steps=200, box=(0.0, 1.0))
    anywhere = lipschitz_lower_bound(_Square(), x, n_iter=0, n_random=0, ascent_steps=200)
    assert 1.0 < inside <= 2.0 + 1e-12  # the largest ratio of two images is below sup |2 x| = 2
    assert anywhere > 2.0  # outside the box the slope grows without bound


def test_the_pair_search_raises_the_lower_bound_of_a_relu_network_and_stays_below_the_bound():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1)
    ).eval()
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    plain = lipschitz_lower_bound(net, x, n_iter=20, n_random=2, ascent_steps=0)
    searched = lipschitz_lower_bound(net, x, n_iter=20, n_random=2, ascent_steps=100)
    assert plain < searched <= lipschitz_bound(net, (3, 16, 16), progress=False)
    assert net.training is False and all(p.requires_grad for p in net.parameters())  # caller's model untouched


@pytest.mark.parametrize(
    "kwargs,words",
    [
        ({"ascent_steps": -1}, ["ascent_steps"]),
        ({"ascent_steps": 2.5}, ["ascent_steps", "integer"]),
        ({"box": (1.0, 0.0)}, ["box", "low < high"]),
        ({"box": (0.0, float("nan"))}, ["box"]),
        ({"box": 1.0}, ["box"]),
    ],
)
def test_bad_search_settings_are_refused_by_name(kwargs, words):
    with pytest.raises(LipcertError) as info:
        lipschitz_lower_bound(nn.Conv2d(1, 1, 1), torch.rand(1, 1, 4, 4), **kwargs)
    assert all(w in str(info.value) for w in words)


class _DictOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)

    def forward(self, x):
        return {"out": self.conv(x)}


def test_a_model_returning_a_dict_is_refused_in_the_users_terms():
    with pytest.raises(LipcertError, match="returns a dict"):
        lipschitz_lower_bound(_DictOutput(), torch.rand(1, 1, 4, 4))
