# Two commands matter (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLI := $(BIN)/calico-nodestatus

.PHONY: demo demo-down test fuzz lint deps system-deps control-plane image venv lock bench soak clean

# `make demo DATASTORE=etcdv3`: the same demo on a private etcd; demo-down removes either.
DATASTORE ?= embedded

demo: deps
	$(BIN)/python scripts/demo.py --datastore $(DATASTORE)

demo-down: venv
	$(BIN)/python scripts/demo.py --down

test: deps
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/lint-imports
	$(BIN)/python scripts/run_tests.py

# The property tests with the `fuzz` profile (tests/plugins/hypothesis_profiles.py): random
# examples, 50 times CI's fixed derandomised budget; failures are kept in .hypothesis/ and replayed
# first on the next run.
fuzz: venv
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -m fuzz -p no:cacheprovider --timeout=0 tests

lint: venv
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/lint-imports

deps: system-deps control-plane venv

system-deps:
	bash scripts/install-system-deps.sh

# kube-apiserver, kubectl and etcd built from the Go module in tools/k8s (skipped when current).
control-plane:
	$(PYTHON) scripts/build_control_plane.py

# The agent's image for deploy/daemonset.yaml, with buildah on a debootstrap base (skipped when current).
image: system-deps venv
	$(BIN)/python scripts/build_image.py

venv: $(VENV)/.installed

# Every Python package (build backend included) at the version in requirements/constraints.txt,
# so a release elsewhere cannot change what a fresh machine installs; `make lock` refreshes it.
$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	PIP_CONSTRAINT=requirements/constraints.txt $(BIN)/pip install -q pip
	PIP_CONSTRAINT=requirements/constraints.txt $(BIN)/pip install -q -e '.[dev]'
	touch $@

UV_VERSION := 0.13.10
lock: venv
	$(BIN)/pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml requirements/build.in --extra dev --python-version 3.11 \
		--custom-compile-command "make lock" --quiet -o requirements/constraints.txt

bench: deps
	$(BIN)/python bench/collect_routes.py
	$(BIN)/python bench/agent_overhead.py --datastore embedded
	$(BIN)/python bench/agent_overhead.py
	$(BIN)/python bench/agent_overhead.py --datastore kubernetes
	$(BIN)/python bench/fleet.py
	$(BIN)/python bench/scrape.py

soak: deps
	SOAK_SECONDS=$${SOAK_SECONDS:-3600} SOAK_REPORT=$${SOAK_REPORT:-soak-report.json} \
		$(BIN)/python -m pytest -m soak --run-soak -p no:cacheprovider --timeout=0 tests/reliability

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist src/*.egg-info
