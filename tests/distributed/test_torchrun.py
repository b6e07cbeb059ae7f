"""Two processes (gloo, CPU) launched with torch.distributed.run give the numbers of one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent


def torchrun(args, tmp_path, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", *args]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def one_and_two_processes(args, tmp_path, report):
    """Run a lipcert command in one process (out ``one``) and under torchrun with two (out ``two``)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "lipcert.cli", *args, "--out", "one"]
    one = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    proc = torchrun(["-m", "lipcert.cli", *args, "--out", "two"], tmp_path)
    assert proc.stdout.count("files:") == 1  # rank 0 alone reports
    return tuple(json.loads((tmp_path / out / report).read_text()) for out in ("one", "two"))


def _same(a, b, exact):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    if exact:
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.slow
def test_every_metric_and_average_synchronised_over_two_processes_equals_one_process(tmp_path):
    sys.path.insert(0, str(HERE))
    from metric_worker import certify_all, dataset

    torchrun([str(HERE / "metric_worker.py"), str(tmp_path / "out.json")], tmp_path)
    got = json.loads((tmp_path / "out.json").read_text())
    assert got["world_size"] == 2
    single = certify_all(dataset())
    assert set(got["results"]) == set(single)
    for key, value in single.items():
        if key == "abstain":
            for name, v in value.items():
                _same(got["results"][key][name], v, exact=name.endswith("micro"))
            continue
        # micro values are ratios of integer counts (pooled IoU: Dinkelbach in integers): identical bits
        for got_part, part in zip(got["results"][key], value, strict=True):
            _same(np.array(got_part, dtype=float), np.array(part, dtype=float), exact=key.endswith("micro"))


@pytest.mark.slow
def test_lipcert_certify_under_torchrun_writes_the_numbers_of_one_process(tmp_path):
    args = [
        "certify",
        "--model",
        "digits-lipunet",
        "--limit",
        "5",
        "--batch-size",
        "2",
        "--no-progress",
        "--metric",
        "pixel_accuracy",
        "recall",
        "iou",
        "miou",
        "--eps",
        "0.05",
        "0.2",
    ]
    a, b = one_and_two_processes(args, tmp_path, "certify.json")
    assert b["timing"]["processes"] == 2 and len(b["timing"]["seconds_per_process"]) == 2
    assert a["n_images"] == b["n_images"] == 5 and a["lipschitz"] == b["lipschitz"]
    assert set(a["metrics"]) == set(b["metrics"])
    for key in a["metrics"]:
        for field in ("worst", "naive", "clean"):
            _same(a["metrics"][key][field], b["metrics"][key][field], exact=key.endswith("micro"))
    assert a["q2"] == b["q2"]


def _tiny_models(tmp_path):
    import torch

    from lipcert.models import LipUNet
    from lipcert.training import save_checkpoint

    torch.manual_seed(0)
    common = dict(num_classes=11, in_channels=3, widths=[(8, 1), (16, 1)], stem=8)
    save_checkpoint(str(tmp_path / "lip.pt"), LipUNet(**common, gain=8.0), {"note": "untrained"})
    save_checkpoint(str(tmp_path / "twin.pt"), LipUNet(**common, parametrization="plain").eval(), {"note": "untrained"})


@pytest.mark.slow
def test_lipcert_compare_under_torchrun_writes_the_numbers_of_one_process(tmp_path):
    _tiny_models(tmp_path)
    args = [
        "compare",
        "--lip",
        "lip.pt",
        "--twin",
        "twin.pt",
        "--limit",
        "3",
        "--size",
        "32",
        "--eps",
        "0.05",
        "0.5",
        "--sigma",
        "0.25",
        "--n0",
        "2",
        "--num-samples",
        "20",
        "--alpha",
        "0.1",
        "--no-progress",
        "--overhead-size",
        "0",
        "0",
    ]
    a, b = one_and_two_processes(args, tmp_path, "results.json")
    assert b["timing"]["processes"] == 2 and a["timing"]["processes"] == 1
    assert a["n_images"] == b["n_images"] == 3
    for key, value in a["lipschitz"].items():  # certified numbers: the same images, the same bound
        if isinstance(value, dict):
            for avg, v in value.items():
                _same(np.array(v, dtype=float), np.array(b["lipschitz"][key][avg], dtype=float), exact=avg == "micro")
        elif isinstance(value, list):
            _same(np.array(value, dtype=float), np.array(b["lipschitz"][key], dtype=float), exact=False)
        else:
            assert value == b["lipschitz"][key]
    # SegCertify: noise seeded from the image index, so every certified label map is the same
    for sa, sb in zip(a["segcertify"], b["segcertify"], strict=True):
        for ra, rb in zip(sa["results"], sb["results"], strict=True):
            assert ra.keys() == rb.keys()
            for name in ra:
                exact = not name.endswith("macro")
                _same(np.array(ra[name], dtype=float), np.array(rb[name], dtype=float), exact=exact)


@pytest.mark.slow
def test_lipcert_audit_under_torchrun_certifies_what_one_process_certifies(tmp_path):
    args = [
        "audit",
        "--model",
        "digits-lipunet",
        "--limit",
        "3",
        "--batch-size",
        "1",
        "--steps",
        "2",
        "--eps",
        "0.1",
        "--no-progress",
    ]
    a, b = one_and_two_processes(args, tmp_path, "audit.json")
    assert [r["image"] for r in a["rows"]] == [r["image"] for r in b["rows"]] == [0, 1, 2]
    assert a["violations"] == b["violations"] == 0
    for m, entry in a["metrics"].items():
        for avg in ("macro", "micro"):
            _same(entry["certified"][avg], b["metrics"][m]["certified"][avg], exact=avg == "micro")
    for ra, rb in zip(a["rows"], b["rows"], strict=True):  # per image, in image order
        assert ra["certified"] == rb["certified"]


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["tau_ce", "margin_ce"])
def test_ddp_training_on_two_processes_matches_one_process_with_the_same_global_batch(tmp_path, loss):
    import torch

    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run(
        [sys.executable, str(HERE / "train_worker.py"), "one.pt", loss],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun([str(HERE / "train_worker.py"), "two.pt", loss], tmp_path)
    a, b = (json.loads((tmp_path / f"{name}.pt.json").read_text()) for name in ("one", "two"))
    assert not a["distributed"] and b["distributed"]
    np.testing.assert_allclose(a["losses"], b["losses"], rtol=1e-5)
    wa, wb = (torch.load(tmp_path / f"{name}.pt", weights_only=True)["state_dict"] for name in ("one", "two"))
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-5, msg=key)
    assert (tmp_path / "two.pt.state").exists()  # rank 0 keeps the resumable state
