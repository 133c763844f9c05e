"""Static checks of the Dockerfile, docker-compose.yml and nginx configs (no Docker engine here)."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

from jobcast.env import Env

REPO = Path(__file__).resolve().parents[2]
TIERS = ("web", "ws", "worker")
PORTS = {
    "web": Env.model_fields["jobcast_web_port"].default,
    "ws": Env.model_fields["jobcast_ws_port"].default,
    "worker": Env.model_fields["jobcast_worker_metrics_port"].default,
}


def dockerfile_stages() -> dict[str, list[str]]:
    """Instructions of each stage of the Dockerfile, by stage name (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    stages, current = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM \S+ AS (\S+)", line)
        if match:
            current = match.group(1)
            stages[current] = [line]
        elif current:
            stages[current].append(line)
    return stages


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    done = subprocess.run([hadolint, "Dockerfile"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_tier_is_a_target_of_one_runtime_image():
    stages = dockerfile_stages()
    for tier in TIERS:
        lines = stages[tier]
        assert lines[0] == f"FROM runtime AS {tier}"
        assert f'CMD ["jobcast", "run", "{tier}"]' in lines
        assert any(line.startswith("HEALTHCHECK") for line in lines)
        assert f"EXPOSE {PORTS[tier]}" in lines
        assert any(f"127.0.0.1:{PORTS[tier]}/healthz" in line for line in lines if line.startswith("HEALTHCHECK"))


def test_the_runtime_stage_is_slim_non_root_and_stops_gracefully():
    runtime = " ".join(dockerfile_stages()["runtime"])
    assert "FROM ${PYTHON_IMAGE} AS runtime" in runtime and "slim" in (REPO / "Dockerfile").read_text()
    assert re.search(r"USER 10001", runtime)
    assert "STOPSIGNAL SIGTERM" in runtime
    for tool in ("gcc", "build-essential", "apt-get install"):
        assert tool not in runtime
    build = dockerfile_stages()["build"]
    # Dependencies get their own cached layer, before the sources are copied in.
    deps = next(i for i, line in enumerate(build) if "--requirement requirements.lock" in line)
    sources = next(i for i, line in enumerate(build) if line.startswith("COPY src"))
    assert deps < sources


def test_the_runtime_stage_installs_dependencies_and_the_project_in_separate_layers():
    """The dependency layer mounts only the dependency wheels, so a code change leaves it cached."""
    build = dockerfile_stages()["build"]
    deps_dir = re.search(r"--wheel-dir (\S+) --requirement requirements.lock", " ".join(build)).group(1)
    project_dir = re.search(r"pip wheel --no-deps --wheel-dir (\S+) \.", " ".join(build)).group(1)
    assert deps_dir != project_dir and not project_dir.startswith(deps_dir + "/"), (deps_dir, project_dir)
    runtime = dockerfile_stages()["runtime"]
    installs = [(i, line) for i, line in enumerate(runtime) if line.startswith("RUN") and "pip install" in line]
    assert len(installs) == 2, installs
    (deps_at, deps_run), (project_at, project_run) = installs
    assert f"from=build,source={deps_dir}," in deps_run, deps_run
    assert f"from=build,source={project_dir}," in project_run, project_run
    assert deps_at < project_at < next(i for i, line in enumerate(runtime) if line.startswith("USER "))
    # Nothing that changes with the code between the two: the dependency layer is first.
    assert not any(line.startswith(("COPY", "ADD")) for line in runtime[:deps_at])


def dirs_owned_by_the_runtime_user(runtime: list[str]) -> set[str]:
    """Folders the runtime stage creates with `install -d -o UID -g GID ...` before its USER line."""
    user = next(i for i, line in enumerate(runtime) if line.startswith("USER "))
    uid = runtime[user].split()[1].split(":")[0]
    made = set()
    for line in runtime[:user]:
        for command in re.split(r"&&|;", line):
            words = command.split()
            if "install" in words and "-d" in words and words[words.index("-o") + 1] == uid:
                made |= {word for word in words if word.startswith("/")}
    return made


def test_the_data_dirs_exist_in_the_image_owned_by_the_runtime_user():
    """A named volume on a folder missing from the image is created root-owned: collectstatic fails."""
    runtime = dockerfile_stages()["runtime"]
    data_dir = next(re.search(r"JOBCAST_DATA_DIR=(\S+)", line).group(1) for line in runtime if "JOBCAST_DATA_DIR=" in line)
    owned = dirs_owned_by_the_runtime_user(runtime)
    # JOBCAST_DATA_DIR itself, collectstatic's STATIC_ROOT and the multiprocess metrics folder.
    assert {data_dir, f"{data_dir}/static", f"{data_dir}/metrics"} <= owned, owned
    # Every volume a service of the jobcast image mounts is one of them.
    for name, service in compose()["services"].items():
        if "build" not in service:
            continue
        for volume in service.get("volumes", []):
            target = volume.split(":")[1]
            assert target in owned, f"{name} mounts {target}, which the image does not create as uid 10001"


@pytest.fixture(scope="session")
def compose_schema(tmp_path_factory) -> dict:
    """The Compose specification's JSON Schema, as shipped in the docker-compose wheel on PyPI."""
    cache = REPO / ".venv" / "compose_spec.json"
    if not cache.exists():
        target = tmp_path_factory.mktemp("compose")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "docker-compose==1.29.2", "-d", str(target)],
            check=True, capture_output=True,
        )
        with zipfile.ZipFile(next(target.glob("*.whl"))) as wheel:
            cache.write_bytes(wheel.read("compose/config/compose_spec.json"))
    return json.loads(cache.read_text())


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_docker_compose_matches_the_compose_specification(compose_schema):
    document = compose()
    document.pop("name")  # top-level `name` came to the spec after this schema's release
    jsonschema.Draft7Validator(compose_schema).validate(document)


def test_compose_services_line_up_with_the_code():
    services = compose()["services"]
    assert set(services) >= {"redis", "postgres", "migrate", "web", "ws", "worker", "nginx", "prometheus", "grafana"}
    for tier in TIERS:
        service = services[tier]
        assert service["build"]["target"] == tier
        assert "container_name" not in service and "ports" not in service  # scalable behind nginx
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["healthcheck"]["test"]
        assert service["expose"] == [str(PORTS[tier])]
        assert f"127.0.0.1:{PORTS[tier]}/readyz" in " ".join(service["healthcheck"]["test"])
    assert "migrate" in services["migrate"]["command"][-1] and "collectstatic" in services["migrate"]["command"][-1]
    for name, service in services.items():
        assert "healthcheck" in service, name
    nginx = services["nginx"]
    assert all(nginx["depends_on"][tier]["condition"] == "service_healthy" for tier in ("web", "ws"))
    assert "./deploy/nginx/compose.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert set(compose()["volumes"]) == {"redis-data", "postgres-data", "static", "prometheus-data", "grafana-data"}


def seconds(duration: str) -> float:
    """A compose duration (`30s`, `2m`, `1m30s`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_compose_stop_grace_periods_outlast_each_tiers_shutdown():
    """docker compose kills a container after stop_grace_period: each must cover the tier's own bound."""
    from jobcast.web import gunicorn_conf

    services = compose()["services"]
    defaults = {name: field.default for name, field in Env.model_fields.items()}
    grace = {name: seconds(service["stop_grace_period"]) for name, service in services.items()
             if "stop_grace_period" in service}
    assert grace["web"] > gunicorn_conf.graceful_timeout
    assert grace["ws"] > defaults["jobcast_ws_drain_seconds"] + defaults["jobcast_ws_shutdown_grace_seconds"]
    assert grace["worker"] > defaults["jobcast_worker_shutdown_seconds"]
    nginx_timeout = re.search(r"^worker_shutdown_timeout (\d+)s;", (REPO / "deploy/nginx/compose.conf").read_text(),
                              flags=re.MULTILINE)
    assert grace["nginx"] > int(nginx_timeout.group(1))
    deploy = (REPO / "docs" / "deploy.md").read_text()
    assert "warm shutdown)" not in deploy and "soft shutdown" in deploy  # what jobcast run worker does


def test_prometheus_scrapes_every_tier_where_it_listens():
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["dns_sd_configs"][0] for job in config["scrape_configs"]}
    for tier, port in PORTS.items():
        assert targets[f"jobcast-{tier}"] == {"names": [tier], "type": "A", "port": port}
    services = compose()["services"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]
    datasource = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in services["grafana"]["volumes"]


def test_env_example_sets_only_documented_variables():
    names = {line.split("=", 1)[0] for line in (REPO / ".env.example").read_text().splitlines() if "=" in line and not line.startswith("#")}
    known = {field.upper() for field in Env.model_fields} | {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
    assert names - known == set()
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS"} <= names


def test_compose_nginx_config_is_the_template_rendered():
    rendered = subprocess.run(
        ["sh", "scripts/render-compose-nginx"], cwd=REPO, capture_output=True, text=True,
        env={"JOBCAST": str(Path(sys.executable).with_name("jobcast")), "PATH": "/usr/bin:/bin"},
    )
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.stdout == (REPO / "deploy" / "nginx" / "compose.conf").read_text(), "run scripts/render-compose-nginx"
    assert "server ws:8002 resolve" in rendered.stdout and "resolver 127.0.0.11" in rendered.stdout


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The project's wheel, built as the Dockerfile's build stage builds it (from a copy of its inputs)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("src", "services"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(out), str(source)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return zipfile.ZipFile(next(out.glob("jobcast-*.whl")))


def test_the_wheel_has_every_package_and_data_file_the_code_reads(built_wheel):
    names = set(built_wheel.namelist())
    config = __import__("tomllib").loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in config["packages"]:
        assert f"{package.replace('.', '/')}/__init__.py" in names, package
    assert "jobcast/events/publish.lua" in names  # publisher.py reads it next to itself
    assert "jobcast/ws/server.py" in names and "jobcast/web/gunicorn_conf.py" in names
    # The web tier's pages and static files (settings find them next to jobcast/web/).
    assert {"jobcast/web/static/jobcast/jobcast.js", "jobcast/web/static/jobcast/pages.js",
            "jobcast/web/static/jobcast/jobcast.css", "jobcast/web/templates/jobcast/base.html",
            "jobcast/web/templates/jobcast/job.html", "jobcast/web/templates/registration/login.html"} <= names
    folder = REPO / "services" / "web"
    shipped = {str(path.relative_to(folder)) for path in [*folder.glob("templates/**/*"), *folder.glob("static/**/*")]
               if path.is_file()}
    assert {name for name in shipped if f"jobcast/web/{name}" not in names} == set()
    # Every package-data pattern matches a file in the wheel (none is left over from old layouts).
    for package, patterns in config.get("package-data", {}).items():
        folder = package.replace(".", "/")
        for pattern in patterns:
            assert fnmatch.filter(names, f"{folder}/{pattern}"), (package, pattern)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves `path` out of the build context (the last matching pattern wins)."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [pattern, pattern.removeprefix("**/")]
        parts = path.split("/")
        # A pattern matching a folder matches everything under it.
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, p) for prefix in prefixes for p in candidates) or (
            pattern.startswith("**/") and any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts)
        ):
            ignored = not negated
    return ignored


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_build_context_has_what_the_dockerfile_copies_and_nothing_local():
    patterns = dockerignore_patterns()
    copied = re.findall(r"^COPY (?!--from)(.+?) \S+$", (REPO / "Dockerfile").read_text(), flags=re.MULTILINE)
    sources = [source for line in copied for source in line.split()]
    assert {"pyproject.toml", "README.md", "src", "services", "deploy/nginx"} <= set(sources)
    for source in sources:
        assert not dockerignored(source, patterns), f"{source} is copied by the Dockerfile but ignored"
        assert not dockerignored(f"{source}/x.py", patterns) or source.endswith((".toml", ".md"))
    for local in (".venv", ".venv/bin/python", ".git", ".git/config", ".jobcast/db.sqlite3", "tests/conftest.py",
                  "src/jobcast/__pycache__/env.cpython-311.pyc", "bench/results/latest.json", ".env"):
        assert dockerignored(local, patterns), local


def test_the_dockerignore_matcher_can_say_no():
    assert not dockerignored(".venv/bin/python", ["*", "!.venv"])
    assert dockerignored("src/a.pyc", ["!src", "**/*.pyc"])


# --- the lock files: exact versions and hashes, made from pyproject.toml's ranges ---------------------

LOCK_EXTRAS = {"requirements.lock": [], "requirements-dev.lock": ["dev", "embedded"],
               "requirements-bench.lock": ["dev", "embedded", "bench"]}


def locked(name: str) -> dict[str, str]:
    """{normalised package name: version} of a lock file."""
    from packaging.utils import canonicalize_name

    pins = re.findall(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", (REPO / name).read_text(), flags=re.MULTILINE)
    return {canonicalize_name(package): version for package, version in pins}


def test_the_locks_are_made_from_the_current_ranges():
    """A changed range in pyproject.toml without `make lock` fails here (the digest), and every
    requirement is pinned at a version its range allows, with the same version in every lock."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from tests.support import load_script

    lock_script = load_script("lock")
    project = __import__("tomllib").loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = locked("requirements.lock")
    for name, extras in LOCK_EXTRAS.items():
        text = (REPO / name).read_text()
        assert text.startswith(f"# pyproject-dependencies-sha256: {lock_script.dependencies_digest()}\n"), \
            f"{name} was made from other ranges: run `make lock`"
        pins = locked(name)
        wanted = [*project["dependencies"], *(r for extra in extras for r in project["optional-dependencies"][extra])]
        for requirement in map(Requirement, wanted):
            package = canonicalize_name(requirement.name)
            assert package in pins, (name, package)
            assert requirement.specifier.contains(pins[package], prereleases=True), (name, str(requirement), pins[package])
        assert {p: v for p, v in pins.items() if p in runtime} == runtime, f"{name} differs from requirements.lock"
        # Every pin has its hashes (pip --require-hashes refuses a file with one that has none).
        entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
        assert all("--hash=sha256:" in entry for entry in entries if "==" in entry), name


def test_make_the_image_and_ci_install_from_the_locks():
    makefile = (REPO / "Makefile").read_text()
    assert "pip install -q --require-hashes -r requirements-dev.lock" in makefile
    assert "pip install -q --no-deps -e ." in makefile
    assert re.search(r"^\$\(INSTALLED\): pyproject.toml requirements-dev.lock$", makefile, flags=re.MULTILINE)
    build = " ".join(dockerfile_stages()["build"])
    assert "pip wheel --require-hashes --wheel-dir /wheels/deps --requirement requirements.lock" in build
    assert "make test" in (REPO / ".ci" / "run").read_text()  # CI: make test, hence make install
