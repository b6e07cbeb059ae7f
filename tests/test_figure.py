"""The publication figure, built from a small comparison result: its panels, files and marks."""

import numpy as np
import pytest

from lipcert.compare.figure import WIDTH_IN, comparison_figure


def _result(k=3, eps=(0.1, 0.25, 0.5)):
    rng = np.random.default_rng(0)
    n = len(eps)
    lip = {
        "clean_pixel_accuracy": {"macro": 0.97, "micro": 0.97},
        "clean_miou": {"macro": 0.6, "micro": 0.7},
        "certified_pixel_accuracy_per_pixel": {"macro": [0.5, 0.2, 0.0][:n]},
        "worst_miou_bound": {"macro": [0.3, 0.2, 0.1][:n], "micro": [0.4, 0.25, 0.1][:n]},
        "curve_eps": list(np.linspace(0, 0.5, 8)),
        "curve_certified_pixel_accuracy_macro": list(np.linspace(0.97, 0.8, 8)),
    }
    reach = [
        {"eps": 0.1, "reachable": True, "certified_pixel_accuracy_macro": 0.95, "worst_case_miou_micro": 0.6,
         "certified_map_miou_micro": 0.8},
        {"eps": 0.25, "reachable": True, "certified_pixel_accuracy_macro": 0.9, "worst_case_miou_micro": 0.5,
         "certified_map_miou_micro": 0.7},
        {"eps": 0.5, "reachable": False},
    ]  # fmt: skip
    sc = {"sigma": 0.25, "n0": 10, "n": 100, "results": reach[: len(eps)],
          "twin_clean_pixel_accuracy": {"macro": 0.99}, "twin_clean_miou": {"micro": 0.9}}  # fmt: skip
    labels = rng.integers(0, k, size=(12, 12))
    example = {
        "image": rng.random((3, 12, 12)),
        "target": np.where(rng.random((12, 12)) < 0.1, 255, labels),
        "pred": labels,
        "radius": rng.random((12, 12)),
        "abstain": {0.1: np.where(rng.random((12, 12)) < 0.2, -1, labels)},
    }
    names = [f"class {c}" for c in range(k)]
    return {"eps": list(eps), "lipschitz": lip, "segcertify": [sc], "_example": example, "class_names": names}


def test_figure_has_every_panel_both_files_at_column_width_and_marks_unreachable_radii(tmp_path):
    from PIL import Image

    out = comparison_figure(_result(), tmp_path / "figure")
    assert out["panels"] == [
        "(a)", "(b)", "(c) image", "ground truth", "Lipschitz prediction", "SegCertify, $\\varepsilon$=0.1",
        "Lipschitz radius",
    ]  # fmt: skip
    assert open(out["pdf"], "rb").read(5) == b"%PDF-"
    width, height = Image.open(out["png"]).size
    assert width == pytest.approx(WIDTH_IN * 300, abs=2) and height > width
    assert out["unreachable_marked"] == [0.5]  # drawn, not a line that silently stops
    assert out["legends_clear_of_data"]  # no curve hidden behind a legend


def test_figure_without_unreachable_radii_marks_none(tmp_path):
    out = comparison_figure(_result(eps=(0.1, 0.25)), tmp_path / "f")
    assert out["unreachable_marked"] == []
