"""docs/cli.md's table of commands lists every `jobcast` command, each with a section, and no other."""

from __future__ import annotations

import re
from pathlib import Path

from jobcast.cli.main import cli

REPO = Path(__file__).resolve().parents[2]


def documented_commands(markdown: str) -> set[str]:
    return set(re.findall(r"^\| \[`jobcast ([a-z-]+)", markdown, flags=re.MULTILINE))


def test_the_table_lists_every_command_and_each_has_a_section():
    doc = (REPO / "docs" / "cli.md").read_text()
    assert documented_commands(doc) == set(cli.commands)
    for name in cli.commands:
        assert re.search(rf"^## `jobcast {name}`$", doc, flags=re.MULTILINE), name


def test_the_check_sees_a_missing_command():
    assert documented_commands("| [`jobcast run`](#x) | y |\n| [`jobcast list`](#x) | z |\n") == {"run", "list"}
