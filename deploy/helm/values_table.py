#!/usr/bin/env python3
"""The values table of docs/kubernetes.md, generated from deploy/helm/jobcast/values.yaml.

Every key documented with a `# -- description` comment in values.yaml is a row (helm-docs'
convention); its default is read from the parsed YAML. `--write` replaces the table between
the markers in docs/kubernetes.md; without it the table is printed. tests/helm/test_docs.py
fails when the doc's table differs from what this prints, or a value has no description.

    python deploy/helm/values_table.py --write
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
VALUES = HERE / "jobcast" / "values.yaml"
DOC = HERE.parents[1] / "docs" / "kubernetes.md"
BEGIN, END = "<!-- values-table:begin -->", "<!-- values-table:end -->"
KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_.\-/]+):(?:\s|$)")


def documented_keys(text: str) -> list[tuple[str, str]]:
    """[(dotted key, description)] for every key preceded by a `# --` comment, in file order."""
    rows, stack, comment, list_indent = [], [], [], None
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.startswith("#"):
            body = stripped.lstrip("#").strip()
            if body.startswith("--"):
                comment = [body[2:].strip()]
            elif comment and stripped.startswith("# "):
                comment.append(body)
            continue
        if not stripped:
            comment = []
            continue
        if list_indent is not None and indent > list_indent:
            continue  # inside a list item of a default value
        list_indent = None
        if stripped.startswith("- "):
            list_indent = indent
            continue
        match = KEY.match(line)
        if not match:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if comment:
            rows.append((".".join(key for _, key in stack), " ".join(comment)))
        comment = []
    return rows


def lookup(values: dict, dotted: str):
    node = values
    for part in dotted.split("."):
        node = node[part]
    return node


def type_of(value) -> str:
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}.get(type(value), "null")


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(values_text: str | None = None) -> str:
    text = values_text if values_text is not None else VALUES.read_text()
    values = yaml.safe_load(text)
    lines = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for key, description in documented_keys(text):
        default = lookup(values, key)
        shown = json.dumps(default, separators=(", ", ": ")) if not isinstance(default, str) else json.dumps(default)
        lines.append(f"| `{key}` | {type_of(default)} | `{cell(shown)}` | {cell(description)} |")
    return "\n".join(lines)


def undocumented_leaves(values_text: str | None = None) -> list[str]:
    """Leaf values (and empty maps/lists) that no documented key covers."""
    text = values_text if values_text is not None else VALUES.read_text()
    documented = {key for key, _ in documented_keys(text)}

    def walk(node, path):
        if isinstance(node, dict) and node:
            for key, value in node.items():
                yield from walk(value, [*path, key])
        else:
            yield ".".join(path)

    def covered(leaf: str) -> bool:
        parts = leaf.split(".")
        return any(".".join(parts[:i]) in documented for i in range(1, len(parts) + 1))

    return [leaf for leaf in walk(yaml.safe_load(text), []) if not covered(leaf)]


def doc_table(doc_text: str) -> str:
    start, end = doc_text.index(BEGIN) + len(BEGIN), doc_text.index(END)
    return doc_text[start:end].strip()


def main(argv: list[str]) -> int:
    generated = table()
    if "--write" in argv:
        doc = DOC.read_text()
        start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
        DOC.write_text(doc[:start] + "\n" + generated + "\n" + doc[end:])
        print(f"wrote the values table into {DOC}")
    else:
        print(generated)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
