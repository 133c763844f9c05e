# jobcast: `make run` starts the whole stack at http://127.0.0.1:8000, `make test` runs every test.
# Both create .venv at the repo root and install what they need first.

VENV      := .venv
PY        := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# PostgreSQL for the second test pass (CI must reach it; elsewhere it is skipped with a reason).
PG_URL    ?= postgres://postgres@127.0.0.1:5432/jobcast

.PHONY: run test test-sqlite test-postgres lint audit install lock bench soak clean screenshots

# Exact versions and hashes from the lock (docs/dependencies.md), then the project itself without
# its dependencies: pyproject.toml's ranges are for products that install jobcast as a library.
$(INSTALLED): pyproject.toml requirements-dev.lock
	@python=$$(scripts/find-python) && { [ -x $(PY) ] || $$python -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements-dev.lock
	$(PY) -m pip install -q --no-deps -e .
	@touch $(INSTALLED)

install: $(INSTALLED)

# The lock files from pyproject.toml's ranges (scripts/lock; keeps locked versions the ranges still allow).
lock: $(INSTALLED)
	$(PY) scripts/lock

run: $(INSTALLED)
	@scripts/system-deps run
	$(VENV)/bin/jobcast run

lint: $(INSTALLED)
	$(VENV)/bin/ruff check src services tests bench
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit/test_layers.py

# Known vulnerabilities of the locked versions (scripts/audit, pip-audit): fails on one; says
# "NOT audited" and passes where the vulnerability service cannot be reached.
audit: $(INSTALLED)
	$(PY) scripts/audit

test: $(INSTALLED)
	@scripts/system-deps test
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory audit
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

test-sqlite: $(INSTALLED)
	$(VENV)/bin/pytest

# scripts/pg-ready says why a server cannot be used: nothing answers, or it refused the login.
test-postgres: $(INSTALLED)
	@if $(PY) scripts/pg-ready "$(PG_URL)"; then \
	  DATABASE_URL="$(PG_URL)" $(VENV)/bin/pytest -m "postgres" -p no:cacheprovider; \
	elif [ -n "$$CI" ]; then \
	  echo "PostgreSQL at $(PG_URL) cannot be used (reason above): CI must run the PostgreSQL tests." >&2; exit 1; \
	else \
	  echo "SKIPPED PostgreSQL tests: PostgreSQL at $(PG_URL) cannot be used (reason above; set PG_URL to one that can)." >&2; \
	fi

# The README's pictures, taken by the browser tests (a plain `make test` keeps them in a temporary folder).
screenshots: $(INSTALLED)
	@scripts/system-deps test
	UPDATE_SCREENSHOTS=1 $(VENV)/bin/pytest -q -p no:cacheprovider tests/e2e/test_browser.py

bench: $(INSTALLED)
	@scripts/system-deps test
	$(PY) -m pip install -q --require-hashes -r requirements-bench.lock
	$(PY) bench/publish_path.py
	$(PY) bench/run.py

# The soak test for longer and wider than in `make test` (docs/reliability.md, "Load and soak"):
# SOAK_WATCHERS sockets on a steady stream of jobs for SOAK_SECONDS; the report goes to SOAK_REPORT.
SOAK_SECONDS  ?= 300
SOAK_WATCHERS ?= 300
SOAK_REPORT   ?= bench/results/soak.txt
soak: $(INSTALLED)
	@scripts/system-deps test
	SOAK_SECONDS=$(SOAK_SECONDS) SOAK_WATCHERS=$(SOAK_WATCHERS) SOAK_REPORT=$(SOAK_REPORT) \
	  $(VENV)/bin/pytest -q -s -p no:cacheprovider tests/e2e/test_soak.py

clean:
	rm -rf $(VENV) .jobcast *.egg-info .pytest_cache
