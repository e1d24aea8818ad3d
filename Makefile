# basnet-cli developer commands.  `make install` then `make test` on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install install-torch install-jax test test-fast lint bench clean

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	@$(BIN)/basnet --version

# PyTorch (CPU build) for `basnet convert` and the PyTorch-equivalence tests.
install-torch:
	$(BIN)/pip install "torch==2.13.0"

# JAX (CPU) to test the model, loss and training loop under KERAS_BACKEND=jax.
install-jax:
	$(BIN)/pip install "jax>=0.10"

# Tests run in TEST_WORKERS processes (pytest-xdist; the CI machine has 2 cores, and much of a
# test is single-threaded Python, imports and subprocess start-up).  TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
PYTEST = $(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal

test:
	$(PYTEST) --durations=20

test-fast:
	$(PYTEST) -m "not slow"

lint:
	$(BIN)/ruff check basnet_cli tests bench docs

# Speed and memory suite; writes bench/results.md and bench/results.json (long on 2 CPUs:
# `make bench BENCH_ARGS=--quick` for a short version).
bench:
	$(BIN)/python bench/run_bench.py $(BENCH_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
