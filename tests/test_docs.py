"""The tutorials' python blocks run, page by page, so they cannot rot."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted((DOCS / "tutorials").glob("*.md"))


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_tutorial_code_runs(page, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert blocks, f"{page.name} has no python block"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__tutorial__"}
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)  # noqa: S102 - our own documentation


def test_the_metric_registry_table_is_the_registry():
    from lipcert.worst_case.registry import REGISTRY

    text = (DOCS / "certificates.md").read_text().split("## The metric registry")[1].split("\n## ")[0]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)` \|.*$", text, flags=re.M)}
    assert set(rows) >= set(REGISTRY), f"metrics missing from the table: {set(REGISTRY) - set(rows)}"
    yes_no = {True: "yes", False: "no"}
    for name, spec in REGISTRY.items():
        cells = [c.strip() for c in rows[name].strip("|").split("|")]
        flags = (spec.needs_target, spec.per_class, spec.higher_is_better)
        assert cells[1:5] == [spec.family] + [yes_no[v] for v in flags]
        for cell, average in zip(cells[5:], ("none", "macro", "micro"), strict=True):
            label, status = spec.solver(average)
            assert cell == f"{label} [{status}]", (name, average, cell)
