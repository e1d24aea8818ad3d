#!/usr/bin/env bash
# GPU benchmark on a machine with JAX and PyTorch but no TensorFlow (and no network).
#   bash bench/gpu.sh prepare   here: Keras and the packages it needs as wheels in .gpu/wheels
#                               (CPython 3.10-3.12, x86_64; git-ignored)
#   bash bench/gpu.sh run [ARGS] on the device, with .gpu carried: installs the missing ones
#                               offline into .gpu/site and runs bench/gpu.py ARGS (results to $OUT)
set -euo pipefail
cd "$(dirname "$0")/.."
# import name -> distribution name (keras with the packages it imports; numpy, ml_dtypes and
# the rest of the JAX stack are the machine's own).
PACKAGES="keras:keras namex:namex optree:optree h5py:h5py absl:absl-py rich:rich markdown_it:markdown-it-py mdurl:mdurl pygments:pygments packaging:packaging"
case "${1:-}" in
  prepare)
    mkdir -p .gpu/wheels
    for py in 3.10 3.11 3.12; do
      for pkg in $PACKAGES; do
        pip download -q --no-deps --only-binary=:all: --python-version "$py" \
          --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
          --platform any -d .gpu/wheels "${pkg#*:}"
      done
    done
    du -sh .gpu/wheels ;;
  run)
    shift
    mkdir -p .gpu/site
    missing=()
    for pkg in $PACKAGES; do
      python -c "import ${pkg%%:*}" 2>/dev/null || missing+=("${pkg#*:}")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
      pip install -q --no-index --no-deps --find-links .gpu/wheels --target .gpu/site "${missing[@]}"
    fi
    PYTHONPATH="$PWD/.gpu/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax \
      python bench/gpu.py "$@" ;;
  *) echo "usage: bash bench/gpu.sh prepare | run [bench/gpu.py options]" >&2; exit 2 ;;
esac
