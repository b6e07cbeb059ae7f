"""The kernels run as plain Python (NUMBA_DISABLE_JIT=1) on the tiny inputs of their tests, under coverage.

A jitted kernel is invisible to coverage and to a debugger; this run executes every kernel line as
Python, against the same references and brute force, so a branch no test reaches shows up here.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent
KERNELS = TESTS.parent / "lipcert" / "kernels"
SELECTION = [
    str(TESTS / "kernels" / "test_greedy.py"),
    str(TESTS / "kernels" / "test_iou_costs.py"),
    str(TESTS / "kernels" / "test_prefix.py"),
    str(TESTS / "worst_case" / "test_iou.py"),
    str(TESTS / "test_float_extremes.py"),
    str(TESTS / "worst_case" / "test_joint_and_weighted.py") + "::test_dantzig_equals_reference_and_bounds_01_optimum",
    str(TESTS / "smoothing" / "test_segcertify.py") + "::test_fused_mode_and_count_equals_a_numpy_reference",
]


@pytest.mark.slow
def test_every_kernel_line_runs_without_the_jit_and_the_tests_still_pass(tmp_path):
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", COVERAGE_FILE=str(tmp_path / ".coverage"))
    run = [sys.executable, "-m", "coverage", "run", f"--source={KERNELS}", "--omit=*/threads.py"]
    tests = subprocess.run([*run, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *SELECTION],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-3000:]
    report = subprocess.run([sys.executable, "-m", "coverage", "report", "--fail-under=95", "--show-missing"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert report.returncode == 0, report.stdout
