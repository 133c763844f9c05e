"""Documentation links: nothing points to a page that is missing or to anything outside the repository.

A clone, a wheel's sources or a package index page has only what is in the repository; a
link to a missing file or to a folder beside the checkout is a dead end for every reader.

1. Every relative Markdown link in every `*.md` file resolves, from that file's folder,
   to a file or folder of the repository; an `#anchor` names a heading of its page.
2. No `*.md` file, Python docstring or comment, YAML, TOML, Makefile, Dockerfile or
   `*.template` points outside the repository (a `../` path that climbs out of it, an
   absolute path beside it, or the spec folder the project was built from).
3. Every `docs/<name>.md` named in a Python file (under src/, services/, tests/, bench/) or
   in a Markdown file exists (style: a module's docstring points to its doc; a pointer to a
   missing page is worse than none).

Each checker takes the repository root, so each also gets a small broken tree to show it can fail.
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[2]

# Not the project's files: virtualenvs, VCS data, caches, build and run output.
SKIP_DIRS = {".git", ".hg", ".venv", "venv", "node_modules", "build", "dist", "__pycache__", ".pytest_cache",
             ".ruff_cache", ".mypy_cache", ".tox", ".jobcast", "htmlcov"}
SKIP_PATHS = {"bench/results"}

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
HTML_LINK = re.compile(r"\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
IGNORED_SCHEMES = ("http:", "https:", "mailto:")

CLIMBING_PATH = re.compile(r"(?<![\w./-])((?:\.\./)+[^\s)\]\"'`<>,;*|]*)")
SPEC_FOLDER = re.compile(r"shared/spec|\.\./shared\b")
DOC_POINTER = re.compile(r"\bdocs/([A-Za-z0-9_.-]+\.md)\b")


@pytest.fixture(autouse=True)
def redis():
    """These tests read files only: no Redis (replaces the conftest's autouse fixture)."""
    return None


# --- finding the files ----------------------------------------------------------------------------

def repo_files(root: Path, wanted) -> list[Path]:
    """The repository's files for which `wanted(path)` is true, without the skipped folders."""
    found = []
    for folder, subfolders, names in os.walk(root):
        here = Path(folder)
        subfolders[:] = sorted(
            name for name in subfolders
            if name not in SKIP_DIRS and not name.endswith(".egg-info")
            and (here / name).relative_to(root).as_posix() not in SKIP_PATHS
        )
        found += [here / name for name in sorted(names) if wanted(here / name)]
    return found


def is_markdown(path: Path) -> bool:
    return path.suffix == ".md"


def is_config(path: Path) -> bool:
    """YAML, TOML, Makefiles, Dockerfiles and templates: read whole."""
    name = path.name
    return (path.suffix in (".yml", ".yaml", ".toml", ".template") or name == "Makefile"
            or name == "Dockerfile" or name.startswith("Dockerfile."))


def is_python(path: Path) -> bool:
    return path.suffix == ".py"


def python_prose(path: Path) -> list[tuple[int, str]]:
    """The docstrings and comments of a Python file, with their first line."""
    text = path.read_text(errors="replace")
    try:
        tree = ast.parse(text)
        comments = [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(text).readline)
                    if tok.type == tokenize.COMMENT]
    except (SyntaxError, tokenize.TokenError):
        return [(1, text)]  # unparsable: check all of it
    docstrings = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            value = first.value if isinstance(first, ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                docstrings.append((first.lineno, value.value))
    return docstrings + comments


def numbered(text: str, first_line: int = 1) -> list[tuple[int, str]]:
    return [(first_line + i, line) for i, line in enumerate(text.splitlines())]


def where(root: Path, path: Path, line: int) -> str:
    return f"{path.relative_to(root).as_posix()}:{line}"


# --- 1. Markdown links resolve --------------------------------------------------------------------

def markdown_lines(text: str, blank_code: bool = True) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, with code spans blanked (links in code are not links)."""
    lines, fence = [], None
    for number, line in numbered(text):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening[1]
        elif fence is not None:
            if line.strip().startswith(fence) and set(line.strip()) == {fence[0]}:
                fence = None
        else:
            lines.append((number, CODE_SPAN.sub("code", line) if blank_code else line))
    return lines


def markdown_links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every inline link, image, reference definition and HTML href/src."""
    links = []
    for number, line in markdown_lines(text):
        for pattern in (INLINE_LINK, REFERENCE_DEFINITION, HTML_LINK):
            links += [(number, match[1]) for match in pattern.finditer(line)]
    return links


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a Markdown page has: its headings' slugs (repeats numbered -1, -2, …) and <a id>s."""
    found, seen = set(), {}
    for _, line in markdown_lines(text, blank_code=False):
        if heading := HEADING.match(line):
            base = slug(heading[2])
            found.add(base if base not in seen else f"{base}-{seen[base]}")
            seen[base] = seen.get(base, 0) + 1
        found.update(HTML_ANCHOR.findall(line))
    return found


def inside(root: Path, path: Path) -> bool:
    return path == root or root in path.parents


def link_problems(root: Path, path: Path, text: str | None = None) -> list[str]:
    """Broken and outside-pointing links of one Markdown file (`text` to check other content as if there)."""
    text = path.read_text(errors="replace") if text is None else text
    problems = []
    for line, target in markdown_links(text):
        if not target or target.startswith(IGNORED_SCHEMES):
            continue
        if SCHEME.match(target):
            problems.append(f"{where(root, path, line)}: {target} is not a repository path")
            continue
        file_part, _, anchor = target.partition("#")
        if not file_part:
            if unquote(anchor) not in anchors(text):
                problems.append(f"{where(root, path, line)}: no heading for #{anchor} on this page")
            continue
        if file_part.startswith("/"):
            problems.append(f"{where(root, path, line)}: {target} is absolute; write it relative to this file")
            continue
        resolved = Path(os.path.normpath(path.parent / unquote(file_part)))
        if not inside(root, resolved):
            problems.append(f"{where(root, path, line)}: {target} points outside the repository")
        elif not resolved.exists():
            problems.append(f"{where(root, path, line)}: {target} does not exist")
        elif anchor and resolved.suffix == ".md" and unquote(anchor) not in anchors(resolved.read_text()):
            problems.append(f"{where(root, path, line)}: {resolved.name} has no heading for #{anchor}")
    return problems


def broken_links(root: Path) -> list[str]:
    return [problem for path in repo_files(root, is_markdown) for problem in link_problems(root, path)]


def test_every_markdown_link_resolves():
    assert broken_links(REPO) == []


def test_the_link_checker_fails_on_broken_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## Setting up\n")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "notes.md").write_text(
        "[fine](../docs/guide.md#setting-up) [web](https://example.com) [top](#notes)\n\n# Notes\n"
        "[wrong folder](guide.md)\n"  # relative to bench/, not docs/
        "[no such heading](../docs/guide.md#nothing)\n"
        "[nor here](#nowhere)\n"
        "```sh\ncat [not a link](missing.md)\n```\n"
        "`[nor this](missing.md)`\n"
    )
    (tmp_path / "README.md").write_text("See [the spec](../elsewhere/spec.md) and [root](/docs/guide.md).\n")
    problems = broken_links(tmp_path)
    assert [p.split(": ", 1)[0] for p in problems] == [
        "README.md:1", "README.md:1", "bench/notes.md:4", "bench/notes.md:5", "bench/notes.md:6"], problems
    assert "outside the repository" in problems[0] and "absolute" in problems[1]
    assert "guide.md does not exist" in problems[2] and "#nothing" in problems[3] and "#nowhere" in problems[4]


def test_the_benchmark_notes_links_work_where_they_are_pasted():
    """bench/report.py pastes bench/notes.md into docs/benchmarks.md, re-pointing its links to docs/."""
    from bench.report import notes_for_docs

    pasted = notes_for_docs()
    assert "](" in pasted  # it has links to check
    assert link_problems(REPO, REPO / "docs" / "benchmarks.md", pasted) == []


# --- 2. nothing points outside the repository -----------------------------------------------------

def outside_pointers(root: Path) -> list[str]:
    """Text that points outside the repository, in docs, docstrings, comments and configuration."""
    beside = str(root.parent).rstrip("/") + "/" if root.parent != Path(root.anchor) else None
    absolute = re.compile(re.escape(beside) + r"[^\s)\]\"'`<>,;*|]*") if beside else None
    problems = []
    for path in repo_files(root, lambda p: is_markdown(p) or is_config(p) or is_python(p)):
        pieces = python_prose(path) if is_python(path) else [(1, path.read_text(errors="replace"))]
        for first_line, piece in pieces:
            for line, text in numbered(piece, first_line):
                found = [m[0] for m in SPEC_FOLDER.finditer(text)]
                found += [m[1] for m in CLIMBING_PATH.finditer(text)
                          if not inside(root, Path(os.path.normpath(path.parent / m[1])))]
                if absolute:
                    found += [m[0] for m in absolute.finditer(text) if not inside(root, Path(os.path.normpath(m[0])))]
                problems += [f"{where(root, path, line)}: {item!r} points outside the repository" for item in found]
    return problems


def test_nothing_points_outside_the_repository():
    assert outside_pointers(REPO) == []


def test_the_outside_checker_fails_on_outside_pointers(tmp_path):
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    spec = "/".join(["..", "shared", "spec", "protocol.md"])
    (repo / "README.md").write_text(f"The contract is [there]({spec}).\n")
    (repo / "src" / "mod.py").write_text(
        f'"""See {spec}."""\n\nPATH = "../../not/checked/in/code"\n# and {tmp_path}/other/notes.md\n')
    (repo / "compose.yml").write_text("build:\n  context: ../sibling-project\n")
    (repo / "Makefile").write_text("docs:\n\tcp docs/*.md ../site/\n")
    (repo / "docs").mkdir()
    (repo / "docs" / "fine.md").write_text("[readme](../README.md) and `../README.md` stay inside.\n")
    problems = outside_pointers(repo)
    assert sorted(p.split(": ", 1)[0] for p in problems) == [
        "Makefile:2", "README.md:1", "README.md:1", "compose.yml:2", "src/mod.py:1", "src/mod.py:4"
    ], problems


# --- 3. every docs page named exists --------------------------------------------------------------

def doc_pointers(root: Path) -> dict[str, set[str]]:
    """Which files name each `docs/<name>.md`: Markdown files, and the docstrings and comments of
    Python files under src/, services/, tests/ and bench/."""
    files = repo_files(root, is_markdown)
    for folder in ("src", "services", "tests", "bench"):
        if (root / folder).is_dir():
            files += repo_files(root / folder, is_python)
    pointers: dict[str, set[str]] = {}
    for path in files:
        pieces = python_prose(path) if is_python(path) else [(1, path.read_text(errors="replace"))]
        for _, piece in pieces:
            for name in DOC_POINTER.findall(piece):
                pointers.setdefault(name, set()).add(path.relative_to(root).as_posix())
    return pointers


def missing_doc_pages(root: Path) -> dict[str, list[str]]:
    return {name: sorted(by) for name, by in doc_pointers(root).items() if not (root / "docs" / name).is_file()}


def test_every_docs_page_pointed_to_exists():
    assert missing_doc_pages(REPO) == {}


def test_the_docs_page_checker_fails_on_a_missing_page(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "here.md").write_text("# Here\n")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "run.py").write_text(
        '"""Fast (docs/here.md)."""\n# see docs/gone.md\nNOT_PROSE = "docs/also-gone.md"\n')
    (tmp_path / "README.md").write_text("Read docs/missing.md.\n")
    assert missing_doc_pages(tmp_path) == {"gone.md": ["bench/run.py"], "missing.md": ["README.md"]}


def test_the_web_api_points_to_the_protocol_doc():
    assert "docs/protocol.md" in (REPO / "services" / "web" / "api.py").read_text().split('"""')[1]
