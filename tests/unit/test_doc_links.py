"""Every `docs/<name>.md` a module, test or doc points to exists (style: a module's docstring
points to its doc; a pointer to a missing page is worse than none)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = re.compile(r"\bdocs/([A-Za-z0-9_.-]+\.md)\b")


def doc_pointers() -> dict[str, set[str]]:
    """Which files name each docs page."""
    files = [REPO / "README.md", *(REPO / "docs").glob("*.md")]
    for folder in ("src", "services", "tests"):
        files.extend((REPO / folder).rglob("*.py"))
    pointers: dict[str, set[str]] = {}
    for path in files:
        for name in DOC.findall(path.read_text(errors="replace")):
            pointers.setdefault(name, set()).add(str(path.relative_to(REPO)))
    return pointers


def test_every_docs_page_pointed_to_exists():
    missing = {name: sorted(where) for name, where in doc_pointers().items() if not (REPO / "docs" / name).is_file()}
    assert missing == {}


def test_the_web_api_points_to_the_protocol_doc():
    assert "docs/protocol.md" in (REPO / "services" / "web" / "api.py").read_text().split('"""')[1]
