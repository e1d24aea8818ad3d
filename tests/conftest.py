"""Shared fixtures: quiet TensorFlow, tiny synthetic datasets, the real-data location."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# predict --runtime auto's measurements go to a cache of the test run, never the user's
os.environ["BASNET_CACHE_DIR"] = tempfile.mkdtemp(prefix="basnet-test-cache-")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# XLA's CPU compiler at its lowest optimisation level, for tests that run Keras under JAX in a
# subprocess: building the model compiles dozens of small programs (one per initialiser shape),
# then the forward or train step; at the default level that is most of the test (measured 40 s
# -> 8 s for building the tiny model).  Same numerics.
FAST_XLA = {"XLA_FLAGS": "--xla_backend_optimization_level=0 "
                         "--xla_llvm_disable_expensive_passes=true"}


def make_pair(rng: np.random.Generator, size: tuple[int, int] = (72, 72)):
    """A noisy background with a red disc; the mask is the disc."""
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.integers(h // 4, 3 * h // 4), rng.integers(w // 4, 3 * w // 4)
    r = rng.integers(min(h, w) // 8, min(h, w) // 4)
    mask = (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r).astype(np.uint8) * 255
    image = (rng.random((h, w, 3)) * 60 + 40).astype(np.uint8)
    image[mask > 0] = (220, 60, 40)
    return image, mask


def write_dataset(root: Path, n: int, layout: str = "duts", seed: int = 0,
                  size: tuple[int, int] = (72, 72)) -> Path:
    """Write ``n`` synthetic pairs in the DUTS (``X-Image``/``X-Mask``) or plain layout."""
    from PIL import Image

    if layout == "duts":
        img_dir, mask_dir = root / "SYN-Image", root / "SYN-Mask"
    else:
        img_dir, mask_dir = root / "images", root / "masks"
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        image, mask = make_pair(rng, size)
        Image.fromarray(image).save(img_dir / f"{i:04d}.jpg", quality=95)
        Image.fromarray(mask).save(mask_dir / f"{i:04d}.png")
    return root


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight ``basnet-tiny`` saved once per session (read-only for the tests)."""
    from basnet_cli.runtime import import_keras

    import_keras()
    from basnet_cli.model.basnet import build_basnet
    from basnet_cli.model.config import TINY

    path = tmp_path_factory.mktemp("model") / "basnet-tiny.weights.h5"
    build_basnet(TINY).save_weights(path)
    return path


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("synth"), 16)


def shared_or_skip(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available at {path}")
    return path
