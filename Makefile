# Every target bootstraps .venv itself; only python3 is needed on the machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: test lint typecheck unit demo fuzz crash-points sim-strong sim-eventual sim-long sim-planted bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check strong eventual configsvc tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -n 2 --dist loadfile

test: lint typecheck unit

demo: $(STAMP)
	$(BIN)/configsvc demo

# Long runs live behind their own targets, not in `make test`.

# The fuzz tests of `make test` with FUZZ_SCALE times the examples, from FUZZ_SEED
# (docs/simulation.md, "Fuzzing").
FUZZ_SCALE ?= 40
FUZZ_SEED  ?= 2026
fuzz: $(STAMP)
	CONFIGSVC_FUZZ_SCALE=$(FUZZ_SCALE) CONFIGSVC_FUZZ_SEED=$(FUZZ_SEED) \
		$(BIN)/pytest -q -n 2 tests/test_fuzz_api.py tests/test_fuzz_wire.py tests/test_fuzz_consul.py

# kill -9 at every named crash point, and the proof that the loss check can
# fail (tests/test_crash_points.py; a few minutes). make test runs one of each kind.
crash-points: $(STAMP)
	$(BIN)/pytest -q -m '' tests/test_crash_points.py

sim-strong: $(STAMP)
	$(BIN)/configsvc sim strong --seeds 500 --json

sim-eventual: $(STAMP)
	$(BIN)/configsvc sim eventual --seeds 500 --json

# 10,000 seeds of each store (about an hour each on 2 cores); record the
# result in benchmarks/README.md.
sim-long: $(STAMP)
	$(BIN)/configsvc sim strong --seeds 10000 --json
	$(BIN)/configsvc sim eventual --seeds 10000 --json

# The detection table of the planted-bug catalogue (docs/simulation.md).
sim-planted: $(STAMP)
	$(BIN)/configsvc sim planted --seeds 100

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# configsvc vs etcd (Debian etcd-server) on this machine, same client; a few
# minutes. Options: make bench BENCH_ARGS="--json out.json --nodes 3,5"
# (benchmarks/README.md, "Cluster benchmark (issue 10): how to run").
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_cluster.py $(BENCH_ARGS)
