"""The shape of the package holds: every module imports on its own, no import cycle, imports
at module level (but for optional dependencies), only the store joins the output path, the
layers import downwards, and the input checks run once per run."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "geoclass"
OPTIONAL = {"torch", "xgboost", "lightgbm", "dask_jobqueue", "dask_gateway", "IPython",
            "ipywidgets"}
# imports flow downwards through these layers (a module may import its own layer or below)
LAYERS = [
    {"errors", "grid", "fs", "atomic", "classes", "config", "logs", "store", "memory"},
    {"cluster"},
    {"kernels", "io", "models", "report", "lazy"},
    {"views"},
    {"steps"},
    {"pipeline"},
    {"api", "commands", "cli", "testing", "__init__"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, module: str) -> list[tuple[str, ast.AST, bool]]:
    """(imported geoclass module or top-level package, node, inside a function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((a.name, child, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - child.level
                                                       + 1] + ([base] if base else []))
                found.append((base, child, in_function))
                found.extend((f"{base}.{a.name}", child, in_function) for a in child.names)
            visit(child, inner)

    visit(tree, False)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        graph[name] = {target for target, _, _ in _imports(path, name) if target in modules
                       and target not in (name, "geoclass")}
    return graph


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    names = [n for n in _modules() if not n.endswith("__main__")]
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    done = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def walk(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    # a package importing its own submodules (its face) is not a cycle of the code
    cycles = [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0]
                                           for m in c[1:])]
    assert not cycles, cycles


def test_imports_are_at_module_level_but_for_optional_dependencies():
    misplaced = set()
    for path in _modules().values():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    tops = {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom):
                    tops = {(node.module or "").split(".")[0]}
                else:
                    continue
                if tops - OPTIONAL:
                    misplaced.add(f"{path.relative_to(PACKAGE)}:{node.lineno} {sorted(tops)}")
    assert not misplaced, sorted(misplaced)


def _joins_output_path(tree: ast.AST) -> list[int]:
    """Lines of `... output_path ... / something` (a path built under the run's folder)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            names = {n.attr for n in ast.walk(node.left) if isinstance(n, ast.Attribute)}
            names |= {n.id for n in ast.walk(node.left) if isinstance(n, ast.Name)}
            if "output_path" in names:
                lines.append(node.lineno)
    return lines


def test_only_the_store_joins_the_output_path():
    offenders = [f"{p.relative_to(PACKAGE)}:{line}" for n, p in _modules().items()
                 if n != "geoclass.store"
                 for line in _joins_output_path(ast.parse(p.read_text(encoding="utf-8")))]
    assert not offenders, offenders


def _layer(module: str) -> int | None:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    return next((i for i, layer in enumerate(LAYERS) if key in layer), None)


def test_layers_import_downwards():
    upwards = []
    for module, targets in _graph().items():
        mine = _layer(module)
        for target in targets:
            theirs = _layer(target)
            if mine is not None and theirs is not None and theirs > mine:
                upwards.append(f"{module} -> {target}")
    assert not upwards, upwards


def test_no_step_imports_another_step():
    graph = _graph()
    crossing = [f"{m} -> {t}" for m, targets in graph.items() for t in targets
                if m.startswith("geoclass.steps.") and t.startswith("geoclass.steps.")
                and not (m == "geoclass.steps.train" and t == "geoclass.steps.autocontext")]
    assert not crossing, crossing


def test_kernels_see_no_config(tmp_path):
    offenders = [str(p.relative_to(PACKAGE)) for n, p in _modules().items()
                 if n.startswith("geoclass.kernels") and any(
                     t.startswith("geoclass.config") for t, _, _ in _imports(p, n))]
    assert not offenders, offenders


@pytest.mark.parametrize("command", ["run"])
def test_the_input_checks_run_once_per_run(tmp_path, monkeypatch, capsys, command):
    from geoclass.cli import main
    from geoclass.steps import check
    from geoclass.testing.synth import synth

    config = synth(tmp_path / "s", tiles=1, size=64, dates=4, classes=3, regions=1)
    calls = []
    original = check.check_inputs

    def counted(config):
        calls.append(1)
        return original(config)

    monkeypatch.setattr(check, "check_inputs", counted)
    assert main([command, str(config), "--workers", "1"]) == 0
    assert len(calls) == 1
    assert main([command, str(config), "--workers", "1"]) == 0  # everything up to date
    assert len(calls) == 2
    capsys.readouterr()
