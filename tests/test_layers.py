"""The architecture holds: layers import downward only (parser ← planner ← runtime ← server),
and the runtime's modules import each other without circles.

Every import counts, those inside functions too: a lazy import is still a dependency. Imports
under ``if TYPE_CHECKING:`` only name types for the checker and are not dependencies.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "ksqlpy"
LAYERS = ["parser", "planner", "runtime", "server"]


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_layers_import_downward_only() -> None:
    modules = _modules()
    upward = []
    for name, path in modules.items():
        mine = _layer(name)
        if mine is None:
            continue
        for target in _imports(path, modules):
            theirs = _layer(target)
            if theirs is not None and theirs > mine:
                upward.append(f"{name} imports {target}")
    assert not upward, "\n".join(sorted(upward))


def test_runtime_modules_import_each_other_without_circles() -> None:
    modules = _modules()
    runtime = {m: p for m, p in modules.items() if m.startswith("ksqlpy.runtime.")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in runtime.items():
        for target in _imports(path, modules):
            # a module reaching a sibling through its package (``from pkg import sibling``) is not
            # a circle; only module-to-module edges count
            if target in runtime and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(runtime):
        if node not in state:
            visit(node)
    assert not cycles, "import circles:\n" + "\n".join(cycles)
