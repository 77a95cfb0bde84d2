# Liên thông — the two commands: `make demo` and `make test`. Both build the virtual environment first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEMO_CITIZENS ?= 50000
PYTEST_ARGS ?=

.PHONY: cluster cluster-down cluster-test bench-cluster demo airflow test lint format bench bench-packages bench-latency bench-latency-cluster requirements clean venv system-packages fuzz test-docs verify-kit

venv: $(INSTALLED)

# The pinned runtime and dev sets (requirements-dev.txt includes requirements.txt), then this project from
# pyproject.toml, editable; pip check fails the build if pyproject.toml asks for something the locks lack.
$(INSTALLED): requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' \
		|| { echo "Set PYTHON=/path/to/python3.11"; exit 1; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null \
		|| { echo "installing python3-venv with apt-get"; apt-get update -qq && apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	@touch $@

# The demo's key password is made per clone and kept under var/ (git-ignored): a sandbox, never a real secret.
# So is the disclosure index's HMAC key (LIENTHONG_DISCLOSURE_KEY, or the Airflow connection lienthong_disclosure_key).
LT := env -u LIENTHONG_DB_URL LIENTHONG_KEY_PASSWORD="$$(cat var/demo-key-password)" \
	LIENTHONG_DISCLOSURE_KEY="$$(cat var/demo-disclosure-key)" $(BIN)/lienthong

# make demo: the embedded default (a SQLite population with defects and a day of life events, the sandbox PKI),
# then the four partners on loopback and every exchange DAG run through Airflow, with a table per partner.
demo: venv
	@rm -rf var/lienthong.db var/lienthong.db-wal var/lienthong.db-shm var/packages var/pki var/reports \
		var/partners var/airflow var/staging var/inbound var/ledger-anchors
	@mkdir -p var && test -s var/demo-key-password || (head -c 24 /dev/urandom | base64 > var/demo-key-password)
	@test -s var/demo-disclosure-key || (head -c 32 /dev/urandom | base64 > var/demo-disclosure-key)
	$(LT) db upgrade
	$(LT) population generate --citizens $(DEMO_CITIZENS) --seed 2026 --defect-rate 0.02
	$(LT) population events --count 2000 --seed 2026
	$(LT) pki init
	$(LT) demo
	$(LT) ledger verify

# make airflow: after make demo, the partners and Airflow (web UI on 127.0.0.1:8080, nothing beyond loopback) with the DAGs.
# The partners' connections go to Airflow's metadata database where none of that id is yet (an exported AIRFLOW_CONN_…
# or an edited connection wins; one line each says which is used); the form's Test button is enabled.
airflow: venv
	@test -s var/pki/root-ca.pem || { echo "no sandbox yet: run make demo first"; exit 1; }
	$(LT) airflow

# make cluster: the production topology natively (lienthong.cluster; docker-compose.yml is the one source): PostgreSQL,
# Redis and the object store, Airflow's API server, scheduler, DAG processor and triggerer, two Celery workers each on a
# host of its own (network namespaces: root only) and the partners on a third; make cluster-down stops it all.
CLUSTER_WORKERS ?= 2
CLUSTER_CITIZENS ?= 100000
cluster: venv system-packages
	$(BIN)/lienthong cluster up --workers $(CLUSTER_WORKERS) --citizens $(CLUSTER_CITIZENS)

cluster-down: venv
	$(BIN)/lienthong cluster down

# make cluster-test: the cluster's tests alone (make test runs them too); make bench-cluster: the 1,000,000-citizen
# snapshot through the cluster with one worker, with two, and through dag.test(), figures in docs/BENCHMARKS.md.
cluster-test: venv system-packages
	$(BIN)/python -m pytest -m cluster -p no:cacheprovider tests/lienthong/test_cluster.py

bench-cluster: venv system-packages
	$(BIN)/python bench/bench_cluster.py --citizens 1000000

# System packages beyond Python: the OpenSSH server (the land partner is also tested against a real sshd), stock
# xmllint (checks XML payloads), fontconfig and DejaVu Sans (the PDF access report's font) and poppler's pdftotext
# (the tests read that PDF back). PostgreSQL is expected to run already (see README).
SYSTEM_TOOLS := /usr/sbin/sshd:openssh-server /usr/bin/xmllint:libxml2-utils /usr/bin/fc-match:fontconfig \
	/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:fonts-dejavu-core /usr/bin/pdftotext:poppler-utils
SYSTEM_TOOLS += /usr/bin/jq:jq /usr/bin/unzip:unzip  # docs/partners.md's stock-tool blocks, run by tests/verify
SYSTEM_TOOLS += /usr/bin/redis-server:redis-server /usr/bin/unshare:util-linux  # make cluster's broker; its hosts
SYSTEM_TOOLS += /usr/bin/chromium:chromium  # the workbench's browser tests (Playwright's own download is not available)
SYSTEM_TOOLS += /usr/bin/docker-compose:docker-compose  # tests/deploy checks docker-compose.yml with docker-compose config
system-packages:
	@missing="$$(for t in $(SYSTEM_TOOLS); do test -e $${t%%:*} || echo $${t#*:}; done)"; \
	if [ -n "$$missing" ]; then echo "installing" $$missing "with apt-get"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

test: venv system-packages
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

# make test-docs: the shell blocks of README.md, docs/ and dags/README.md run as written (or marked not-runnable with
# a reason), every command in them checked against the code, and the connection extras against docs/connectors.md.
test-docs: venv
	$(BIN)/python -m pytest tests/docs -n 2

# make fuzz: the Hypothesis harnesses of tests/fuzz, 20,000 inputs each (CI runs them with a few hundred).
fuzz: venv
	LIENTHONG_FUZZ_EXAMPLES=20000 $(BIN)/python -m pytest tests/fuzz -m fuzz -n 2

# ruff, then the layers and the no-circle rule declared in pyproject.toml ([tool.importlinter]).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv
	$(BIN)/python bench/bench_population_load.py
	$(BIN)/python bench/bench_package.py
	$(BIN)/python bench/bench_sftp.py
	$(BIN)/python bench/bench_validation.py
	$(BIN)/python bench/bench_snapshot.py --citizens 1000000 --workers 2
	$(BIN)/python bench/bench_disclosure_index.py --citizens 1000000 --workers 2 --rounds 2
	$(BIN)/python bench/bench_disclosure_lookup.py --rows 10000000
	$(BIN)/python bench/bench_workbench.py --citizens 1000000 --held 100000

bench-packages: venv
	$(BIN)/python bench/bench_package.py

# make bench-latency: a life event's way to every partner under a running scheduler (issue 17), about 15 minutes
bench-latency: venv
	$(BIN)/python bench/bench_latency.py --events 200 --burst 10000

# make bench-latency-cluster: the same through the native cluster (Celery workers on hosts of their own), as root
bench-latency-cluster: venv system-packages
	@root=$$(mktemp -d /tmp/lienthong-latency-cluster-XXXXXX) && chmod 755 $$root && \
	$(BIN)/lienthong cluster up --root $$root --citizens 20000 && \
	{ $(BIN)/python bench/bench_latency.py --cluster $$root --events 200 --burst 10000; status=$$?; \
	  $(BIN)/lienthong cluster down --root $$root; rm -rf $$root; exit $$status; }

# make requirements: the locks, resolved from pyproject.toml in a throwaway virtual environment (never .venv):
# requirements.txt is what `pip install .` brings (no test or lint tools), requirements-dev.txt adds the `dev`
# extra on top of those pins. Pins already in the locks are kept while they still fit (so the same pyproject.toml
# gives the same locks); UPGRADE=1 resolves everything afresh. Built from a copy, so no build/ is left here.
requirements:
	@set -euo pipefail; tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	keep=(); if [ -z "$(UPGRADE)" ]; then \
		for lock in requirements.txt requirements-dev.txt; do \
			if [ -f $$lock ]; then grep -v '^-r' $$lock > "$$tmp/kept-$$lock"; keep+=(-c "$$tmp/kept-$$lock"); fi; \
		done; fi; \
	$(PYTHON) -c 'import shutil, sys; shutil.copytree(".", sys.argv[1], ignore=shutil.ignore_patterns(*sys.argv[2:]))' \
		"$$tmp/src" .git $(VENV) var build dist '*.egg-info' __pycache__ '.*_cache' .hypothesis; \
	$(PYTHON) -m venv "$$tmp/venv"; pip="$$tmp/venv/bin/python -m pip"; \
	$$pip install --quiet --upgrade pip; \
	$$pip install --quiet "$${keep[@]}" "$$tmp/src"; \
	{ echo "# What Liên thông runs on: the whole resolved set, pinned. Regenerate with: make requirements"; \
	  $$pip freeze --exclude lienthong; } > "$$tmp/requirements.txt"; \
	$$pip install --quiet -c "$$tmp/requirements.txt" "$${keep[@]}" "$$tmp/src[dev]"; \
	{ echo "# Tests, lint and benchmarks: the runtime set plus the dev extra, pinned. Regenerate with: make requirements"; \
	  echo "-r requirements.txt"; \
	  $$pip freeze --exclude lienthong | grep -vxF -f "$$tmp/requirements.txt"; } > "$$tmp/requirements-dev.txt"; \
	mv "$$tmp/requirements.txt" requirements.txt; mv "$$tmp/requirements-dev.txt" requirements-dev.txt; \
	echo "requirements.txt: $$(grep -c '==' requirements.txt) pins; requirements-dev.txt: $$(grep -c '==' requirements-dev.txt) more"

# make verify-kit: the partners' verification kit (verify/pyproject.toml, lienthong-verify) as a wheel in dist/,
# built from a copy of verify/ with its schema links resolved, so that no build/ is left in the tree.
verify-kit: venv
	@set -euo pipefail; tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	cp -rL verify "$$tmp/verify"; rm -rf "$$tmp/verify/build" "$$tmp"/verify/src/*.egg-info; \
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist "$$tmp/verify"; ls -l dist/lienthong_verify-*.whl

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
