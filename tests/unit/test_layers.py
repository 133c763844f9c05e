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


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, absolute names, including imports inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def tier_of(module: str) -> str | None:
    return next((tier for tier in TIERS if module == tier or module.startswith(tier + ".")), None)


def violations(folder: Path, allowed_tier: str | None) -> list[str]:
    found = []
    for path in folder.rglob("*.py"):
        for module in imported_modules(path):
            tier = tier_of(module)
            if tier and tier != allowed_tier:
                found.append(f"{path.relative_to(folder)} imports {module}")
    return found


def test_the_core_never_imports_a_tier():
    assert violations(CORE, allowed_tier=None) == []


def test_tiers_never_import_each_other():
    for tier, folder in TIERS.items():
        assert violations(folder, allowed_tier=tier) == [], tier


def test_the_checker_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from jobcast.ws.consumers import JobConsumer\n")
    assert "bad.py imports jobcast.ws.consumers" in violations(tmp_path, allowed_tier="jobcast.web")
