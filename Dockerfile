# syntax=docker/dockerfile:1
# One image, one target per tier (docs/deploy.md): every target shares the same layers
# and differs only in its command, port, health check and stop signal, so one build
# serves web, ws and worker — as `jobcast run <tier>` does outside containers.
#
#   docker build --target web -t jobcast-web .     (likewise ws, worker)

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: wheels for the project and its locked dependencies ---------------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# Dependencies first, in their own layer: it is rebuilt only when the lock changes. Exact
# versions and hashes (requirements.lock, made by `make lock` from pyproject.toml's ranges).
COPY requirements.lock ./
RUN pip wheel --require-hashes --wheel-dir /wheels/deps --requirement requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
COPY services ./services
# The project's own wheel in a folder of its own, so the runtime stage's dependency
# layer (which mounts only /wheels/deps) stays cached when only the code changes.
RUN pip wheel --no-deps --wheel-dir /wheels/project .

# --- runtime: no compilers, no pip cache, a non-root user ---------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    JOBCAST_BIND=0.0.0.0 \
    JOBCAST_DATA_DIR=/data
# JOBCAST_DATA_DIR and the folders the tiers write in it (collectstatic's static/, the
# multiprocess metrics/) are made here, owned by the runtime user: a named volume mounted
# on /data/static (docker-compose.yml) starts as a copy of the image's folder, owner
# included; a folder missing from the image would be created root-owned instead.
RUN groupadd --system --gid 10001 jobcast \
    && useradd --system --uid 10001 --gid jobcast --home-dir /data --no-create-home jobcast \
    && install -d -o 10001 -g 10001 -m 0755 /data /data/static /data/metrics
# Dependencies: one layer, cached until requirements.lock changes (the mount's content is
# part of the cache key, and /wheels/deps does not change with the code).
RUN --mount=type=bind,from=build,source=/wheels/deps,target=/wheels \
    pip install --no-index /wheels/*.whl
# The project: the small layer rebuilt on every code change.
RUN --mount=type=bind,from=build,source=/wheels/project,target=/wheels \
    pip install --no-index --no-deps /wheels/*.whl
COPY deploy/nginx /app/deploy/nginx
WORKDIR /app
USER 10001:10001
# gunicorn, uvicorn and celery all shut down gracefully on SIGTERM (docs/deploy.md).
STOPSIGNAL SIGTERM

FROM runtime AS web
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/healthz', timeout=2)"]
CMD ["jobcast", "run", "web"]

FROM runtime AS ws
EXPOSE 8002
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8002/healthz', timeout=2)"]
CMD ["jobcast", "run", "ws"]

FROM runtime AS worker
EXPOSE 9101
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9101/healthz', timeout=2)"]
CMD ["jobcast", "run", "worker"]
