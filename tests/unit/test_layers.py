"""Import rules: the core never imports a tier; tiers never import each other.

import-linter cannot build a graph of this layout (the tiers are mapped into the
`jobcast` package from services/, which grimp refuses as not top-level), so this test
reads every module's imports with `ast` instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIERS = {"jobcast.web": REPO / "services" / "web", "jobcast.ws": REPO / "services" / "ws", "jobcast.worker": REPO / "services" / "worker"}
CORE = REPO / "src" / "jobcast"


def package_of(path: Path, folder: Path, package: str) -> str:
    """The package a file's relative imports start from: `folder` is mapped to `package`."""
    parts = list(path.relative_to(folder).with_suffix("").parts)
    parts.pop()  # the module itself; for __init__.py the package is its folder
    return ".".join([package, *parts])


def imported_modules(path: Path, package: str) -> set[str]:
    """Every module a file imports, absolute names, including imports inside functions.

    `package` is the file's package: `from ..ws import consumers` in jobcast.web.api is
    resolved to jobcast.ws and jobcast.ws.consumers, as Python would.
    """
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def tier_of(module: str) -> str | None:
    return next((tier for tier in TIERS if module == tier or module.startswith(tier + ".")), None)


def violations(folder: Path, package: str, allowed_tier: str | None) -> list[str]:
    """Imports of a tier other than `allowed_tier` in the modules under `folder` (= `package`)."""
    found = []
    for path in folder.rglob("*.py"):
        for module in imported_modules(path, package_of(path, folder, package)):
            tier = tier_of(module)
            if tier and tier != allowed_tier:
                found.append(f"{path.relative_to(folder)} imports {module}")
    return found


def test_the_core_never_imports_a_tier():
    assert violations(CORE, "jobcast", allowed_tier=None) == []


def test_tiers_never_import_each_other():
    for tier, folder in TIERS.items():
        assert violations(folder, tier, allowed_tier=tier) == [], tier


def test_the_checker_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from jobcast.ws.consumers import JobConsumer\n")
    assert "bad.py imports jobcast.ws.consumers" in violations(tmp_path, "jobcast.web", allowed_tier="jobcast.web")


def test_the_checker_resolves_relative_imports(tmp_path):
    (tmp_path / "api.py").write_text("from ..ws import consumers\nfrom . import schemas\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "__init__.py").write_text("from ... import worker\n")
    (tmp_path / "sub" / "deep.py").write_text("from ...ws.auth import authenticate\nfrom .. import views\n")

    found = violations(tmp_path, "jobcast.web", allowed_tier="jobcast.web")

    assert sorted(found) == [
        "api.py imports jobcast.ws",
        "api.py imports jobcast.ws.consumers",
        "sub/__init__.py imports jobcast.worker",
        "sub/deep.py imports jobcast.ws.auth",
        "sub/deep.py imports jobcast.ws.auth.authenticate",
    ]


def test_the_core_may_not_reach_a_tier_relatively(tmp_path):
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "queue.py").write_text("def f():\n    from ..worker import runner\n")
    assert sorted(violations(tmp_path, "jobcast", allowed_tier=None)) == [
        "jobs/queue.py imports jobcast.worker",
        "jobs/queue.py imports jobcast.worker.runner",
    ]


def import_graph() -> dict[str, set[str]]:
    """jobcast's modules and the jobcast modules each imports (also inside functions)."""
    graph = {}
    for package, folder in {"jobcast": CORE, **TIERS}.items():
        for path in folder.rglob("*.py"):
            module = ".".join([package, *path.relative_to(folder).with_suffix("").parts]).removesuffix(".__init__")
            graph[module] = imported_modules(path, package_of(path, folder, package))
    return {module: {m for m in imports if m in graph and m != module} for module, imports in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles in `graph` (its strongly connected parts of more than one module)."""
    order, low, stack, found = {}, {}, [], []

    def visit(module):
        order[module] = low[module] = len(order)
        stack.append(module)
        for imported in graph[module]:
            if imported not in order:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], order[imported])
        if low[module] == order[module]:
            part = stack[stack.index(module):]
            del stack[stack.index(module):]
            if len(part) > 1:
                found.append(sorted(part))

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return found


def test_no_module_imports_itself_round_a_cycle():
    # `jobcast run` once imported the stack, which imported `jobcast run` back for a helper.
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
