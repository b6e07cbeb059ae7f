"""Nothing imports upward: the package's layers, checked on the source (like STUMPY's import checks)."""

import ast
from pathlib import Path

import lipcert

ROOT = Path(lipcert.__file__).parent
RANK = {
    "core": 0,
    "kernels": 1, "solvers": 1,
    "worst_case": 2, "lipschitz": 2,
    "metrics": 3,
    "certify": 4, "models": 4, "smoothing": 4, "data": 4, "training": 4, "attacks": 4,
    "audit": 5, "compare": 5,
    "cli": 6, "__init__": 6,
}  # fmt: skip


def _top(module_path: Path) -> str:
    rel = module_path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    pkg = path.relative_to(ROOT).parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = list(pkg[: len(pkg) - node.level + 1]) if node.level > 1 else list(pkg)
            target = base + (node.module.split(".") if node.module else [])
            if not target:  # `from . import x` inside the top package: a submodule, or the package facade
                for alias in node.names:
                    yield alias.name if alias.name in RANK else "__init__"
                continue
            yield target[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lipcert."):
            yield node.module.split(".")[1]


def test_every_entry_of_the_tree_has_a_layer_and_every_layer_an_entry():
    """The table is the tree: a new package or module must be placed in a layer, a removed one leaves it."""
    entries = {p.name.removesuffix(".py") for p in ROOT.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert entries == set(RANK), f"in the tree only: {entries - set(RANK)}; in the table only: {set(RANK) - entries}"
    drawing = (ROOT.parent / "docs" / "architecture.md").read_text()
    drawn = [name for name in RANK if f"{name}/" in drawing or f"{name}.py" in drawing]
    undrawn = sorted(set(RANK) - set(drawn) - {"__init__"})
    assert not undrawn, f"docs/architecture.md does not draw {undrawn}"


def test_every_subpackage_is_reachable_after_import_lipcert():
    for name in RANK:
        if name not in ("__init__", "cli") and (ROOT / name).is_dir():
            assert hasattr(lipcert, name), f"lipcert.{name} is not reachable after `import lipcert`"


def test_no_module_imports_a_higher_layer():
    offenders = []
    for path in ROOT.rglob("*.py"):
        src = _top(path)
        if src not in RANK:
            offenders.append(f"{path}: unknown layer {src!r}")
            continue
        for dst in _imports(path):
            if dst in RANK and RANK[dst] > RANK[src]:
                offenders.append(f"{path.relative_to(ROOT)} imports {dst} (layer {RANK[dst]} > {RANK[src]})")
    assert not offenders, "\n".join(offenders)


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
                if private:
                    source = f"{'.' * node.level}{node.module or ''}"
                    offenders.append(f"{path.relative_to(ROOT)}: from {source} import {private}")
    assert not offenders, "\n".join(offenders)


def _code_lines(node) -> int:
    """Lines of a function's body, its docstring left out."""
    body = node.body
    has_doc = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
    start = body[0].end_lineno + 1 if has_doc and isinstance(body[0].value.value, str) else body[0].lineno
    return node.end_lineno - start + 1


def test_no_function_outside_the_kernels_is_longer_than_60_lines():
    long = []
    for path in ROOT.rglob("*.py"):
        if "kernels" in path.relative_to(ROOT).parts:
            continue  # numba kernels: one flat loop nest each, checked against tests/reference.py
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _code_lines(node) > 60:
                long.append(f"{path.relative_to(ROOT)}: {node.name} ({_code_lines(node)} lines)")
    assert not long, "\n".join(long)
