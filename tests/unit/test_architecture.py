"""The shape of the code, held by tests: no import circle, an engine that knows no study and no dose, one
clock, and modules small enough to read at once. Each failure names the file and line to look at.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mfg", "labels")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module of ours that ``name`` imports, at module level or inside a function."""
    targets: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        candidates: list[str] = []
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            candidates = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for candidate in candidates:
            while candidate and candidate not in MODULES:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(GRAPH[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_in_the_package() -> None:
    assert _cycles() == []


def test_the_cycle_finder_finds_a_circle() -> None:
    saved = dict(GRAPH)
    try:
        # dose preparation uses the engine's batches: an import back from there would close a circle
        GRAPH["mfg.process.batches"] = GRAPH["mfg.process.batches"] | {"mfg.dosing.preparation"}
        assert any("mfg.process.batches" in cycle for cycle in _cycles())
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


def _reaches(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in GRAPH[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("mfg.process")))
def test_the_engine_imports_no_capability_and_no_web(module: str) -> None:
    # Models only (the audit verifier's registry of every table) are no knowledge of a capability.
    reached = {m for m in _reaches(module) if not m.endswith(".models")}
    bad = sorted(m for m in reached if m.startswith(("mfg.dosing", "mfg.web", "mfg.capabilities")))
    assert bad == [], f"{module} reaches {bad}"


def test_labels_never_import_mfg() -> None:
    bad = {m: sorted(t for t in GRAPH[m] if t.startswith("mfg")) for m in MODULES if m.startswith("labels")}
    assert {m: t for m, t in bad.items() if t} == {}


# Study and dose knowledge that once was code in the engine: step keys, MBR codes, the dose order.
STUDY_WORDS = (
    "processing.",
    "expansion.passage",
    "cryobank.",
    "dose.",
    "AAMSC",
    "dose_order",
    "delivered_dose",
    "label_reconciliation",
    "suspension_ml",
)


def test_the_engine_knows_no_study_and_no_dose() -> None:
    found = []
    for name, path in MODULES.items():
        if not name.startswith("mfg.process") or name.endswith(".models"):
            continue  # the batch table keeps its dose_order_id column; the engine never reads it
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                hits = [w for w in STUDY_WORDS if w in node.value]
                found += [f"{path.relative_to(ROOT)}:{node.lineno}: {hits}"] if hits else []
            if isinstance(node, ast.Attribute) and node.attr == "dose_order_id":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: .dose_order_id")
    assert found == [], "\n".join(found)


def test_every_now_and_today_comes_from_the_clock() -> None:
    found = []
    for name, path in MODULES.items():
        if name == "mfg.clock":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("now", "today", "utcnow")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in ("datetime", "date", "time")
            ):
                found.append(
                    f"{path.relative_to(ROOT)}:{node.lineno}: {node.func.value.id}.{node.func.attr}()"
                )
    assert found == [], "use mfg.clock:\n" + "\n".join(found)


ENGINE_MODULE_LINES = 400
ENGINE_FUNCTION_LINES = 60


def test_engine_modules_and_functions_read_at_once() -> None:
    too_long = []
    for name, path in sorted(MODULES.items()):
        if not name.startswith("mfg.process"):
            continue
        text = path.read_text()
        if len(text.splitlines()) > ENGINE_MODULE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > ENGINE_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} is {length} lines")
    assert too_long == [], "\n".join(too_long)


def test_module_graph_is_not_empty() -> None:
    # The checks above would pass on an empty graph: make sure it is the real one.
    assert "mfg.process.steps" in GRAPH and "mfg.process.batches" in GRAPH["mfg.process.steps"]
    assert len(MODULES) > 50 and sum(len(t) for t in GRAPH.values()) > 200
