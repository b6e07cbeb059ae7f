import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lipcert.cli import main
from lipcert.compare import CompareConfig
from lipcert.models import LipUNet, load_checkpoint
from lipcert.training import save_checkpoint


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    common = dict(num_classes=11, in_channels=3, widths=[(8, 1), (16, 1)], stem=8)
    lip = LipUNet(**common, gain=8.0)
    twin = LipUNet(**common, parametrization="plain")
    save_checkpoint(str(d / "lip.pt"), lip, {"note": "untrained"})
    save_checkpoint(str(d / "twin.pt"), twin.eval(), {"note": "untrained"})
    return SimpleNamespace(dir=d, lip=lip.eval())  # the parametrised original, for the round-trip test


@pytest.mark.slow
def test_compare_on_a_tiny_setting_writes_every_output(tiny_models, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            "--lip",
            str(tiny_models.dir / "lip.pt"),
            "--twin",
            str(tiny_models.dir / "twin.pt"),
            "--limit",
            "2",
            "--size",
            "32",
            "--eps",
            "0.05",
            "0.5",
            "--sigma",
            "0.25",
            "--n0",
            "2",
            "--n",
            "20",
            "--alpha",
            "0.1",
            "--out",
            str(out),
            "--no-progress",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "(macro)" in text and "(micro)" in text and "unreachable" in text
    res = json.loads((out / "results.json").read_text())
    assert set(res["ratios"]) >= {"overhead", "speedup_vs_segcertify", "curve_64_vs_1", "curve_64_vs_1_quartiles"}
    q = res["ratios"]["curve_64_vs_1_certification_only_quartiles"]
    assert 0 < q[0] <= q[1]
    assert res["n_images"] == 2 and res["segcertify"][0]["forward_passes_per_image"] == 22
    assert res["timing"]["samples"] == CompareConfig().timing_repeats  # the one (short) batch, every repeat
    rows = res["segcertify"][0]["results"]
    assert rows[0]["reachable"] and not rows[1]["reachable"]
    import csv

    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["method", "setting", "eps", "metric", "average", "value", "status", "alpha", "clean"]
    for row in table:  # numeric columns hold numbers only; the status says what they are
        assert row["status"] in ("exact", "bound", "unreachable", "measured")
        if row["status"] == "unreachable":
            assert row["value"] == ""
        else:
            assert 0.0 <= float(row["value"]) <= 1.0
        float(row["eps"])
    data = json.loads((out / "results.json").read_text())
    # the CSV carries the JSON's numbers: every Lipschitz row, and SegCertify's reachable rows
    eps = data["eps"]
    for row in table:
        j = eps.index(float(row["eps"]))
        if row["method"] == "lipschitz":
            lip_values = data["lipschitz"]
            if row["metric"] == "certified_foreground_recall":
                expected = lip_values["certified_foreground_recall_micro"][j]
            else:
                expected = lip_values[row["metric"]][row["average"]][j]
            assert float(row["value"]) == pytest.approx(expected, rel=1e-12)
        elif row["status"] != "unreachable" and row["value"]:
            found = data["segcertify"][0]["results"][j][f"{row['metric']}_{row['average']}"]
            assert float(row["value"]) == pytest.approx(found, rel=1e-12)
        if row["method"] == "segcertify" and row["clean"]:  # the twin's own clean values
            sc = data["segcertify"][0]
            key = "twin_clean_pixel_accuracy" if "pixel_accuracy" in row["metric"] else "twin_clean_miou"
            assert float(row["clean"]) == pytest.approx(sc[key][row["average"]], rel=1e-12)
    sc = data["segcertify"][0]
    assert sc["correction"] == "holm" and 0 < sc["twin_clean_pixel_accuracy"]["micro"] <= 1
    assert rows[0]["radius"] == pytest.approx(rows[0]["eps"], rel=1e-9)  # R = sigma Phi^-1(tau)
    assert "Holm correction" in text and "per pixel by construction" in text
    assert set(data["provenance"]["versions"]) >= {"lipcert", "torch", "numba", "ortools"}
    assert data["provenance"]["lipschitz_source"] == data["lipschitz"]["lipschitz_source"]
    assert data["lipschitz"]["foreground_classes"] == list(range(1, 11))
    assert (out / "comparison.png").stat().st_size > 0
    assert (out / "figure.pdf").read_bytes()[:5] == b"%PDF-" and (out / "figure.png").stat().st_size > 0
    lip = res["lipschitz"]
    joint, per_pixel = (
        lip["certified_pixel_accuracy_joint"]["macro"],
        lip["certified_pixel_accuracy_per_pixel"]["macro"],
    )
    assert all(j >= p for j, p in zip(joint, per_pixel, strict=True))
    assert lip["lipschitz"] <= 8.0 * (1 + 1e-4)


@pytest.mark.slow
def test_certify_cli_prints_macro_and_micro_and_q2(tiny_models, tmp_path, capsys):
    code = main(
        [
            "certify",
            "--model",
            str(tiny_models.dir / "lip.pt"),
            "--dataset",
            "digits",
            "--size",
            "32",
            "--limit",
            "3",
            "--metric",
            "pixel_accuracy",
            "fnr",
            "--level",
            "0.5",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "| pixel_accuracy | macro | exact |" in text and "| pixel_accuracy | micro | exact |" in text
    assert "Q2 pixel_accuracy" in text and "| metric | average | status | clean |" in text
    data = json.loads((tmp_path / "certify.json").read_text())
    assert data["lipschitz_source"] == "computed" and data["n_images"] == 3
    assert {m["lipschitz_source"] for m in data["metrics"].values()} == {"computed"}  # every certificate says so


def test_checkpoint_round_trip_matches_the_parametrised_model(tiny_models):
    model = load_checkpoint(tiny_models.dir / "lip.pt")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), tiny_models.lip(x).numpy(), atol=1e-5)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in model.modules())
    assert model.config["arch"] == "LipUNet" and model.meta == {"note": "untrained"}


def test_version_and_defaults_in_help(capsys):
    import lipcert

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and lipcert.__version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["certify", "--help"])
    text = capsys.readouterr().out
    assert "(default: digits)" in text and "(default: lipcert_out/certify)" in text


def test_every_option_of_every_command_says_what_it_does():
    """No bare option in --help: each has a help text beyond its default, and the description is for users."""
    import argparse

    from lipcert.cli.arguments import build_parser

    parser = build_parser()
    assert "``" not in parser.description and "pixel units" in parser.description
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == {"demo", "compare", "certify", "audit", "train"}
    for name, sub in commands.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            text = (action.help or "").replace("(default: %(default)s)", "").strip()
            assert text, f"lipcert {name} {action.option_strings}: no help text"


def test_a_model_whose_class_count_differs_from_the_dataset_is_refused(tmp_path, capsys):
    torch.manual_seed(0)
    net = LipUNet(num_classes=3, in_channels=3, widths=[(8, 1)], stem=8, gain=8.0)
    save_checkpoint(str(tmp_path / "k3.pt"), net, {})
    code = main(["certify", "--model", str(tmp_path / "k3.pt"), "--limit", "1", "--out", str(tmp_path / "o")])
    assert code == 2 and "predicts 3 classes but the dataset has 11" in capsys.readouterr().err
