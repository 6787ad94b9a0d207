"""Fixtures shared across the test tree, the fake models and losses (``fakes.py``), and the ``gpu``
marker's rule: a test marked ``@pytest.mark.gpu`` is skipped where CUDA is not available."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import fakes  # noqa: F401  (registers the fake models and losses of the contract tests)
from specmamba.data import make_synthetic_dataset
from specmamba.engine import resolve_config, train


def pytest_collection_modifyitems(config, items):
    """Skip every ``gpu``-marked test without CUDA (one rule instead of a skipif on each test)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


#: The real ISIC 2017 pairs beside the repository (tests using them skip when absent).
ISIC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isic2017"


@pytest.fixture()
def one_torch_thread():
    """Run a test on one intra-op thread, then restore the setting.

    For tests on tiny tensors: a second thread gains nothing, and on busy shared cores the OpenMP
    barriers between threads make every small op wait for a time slice (up to 100x slower).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """18 synthetic 32x32 lesion pairs (read-only for tests: copy before modifying)."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth") / "data", n=18, size=32, seed=3)


def train_argv(data, out, *extra: str, epochs: int = 1, batch_size: int = 4) -> list[str]:
    """`specmamba train` arguments of a seconds-long CPU run of test_unet at 32x32."""
    return [
        "train",
        "--data",
        str(data),
        "--model",
        "test_unet",
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--img-size",
        "32",
        "--batch-size",
        str(batch_size),
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


@pytest.fixture(scope="session")
def tiny_train_argv():
    """The ``train_argv`` builder (test folders are not packages, so it travels as a fixture)."""
    return train_argv


def _isic_subset(root: Path, n: int) -> Path:
    """``root`` holding symlinks to the first ``n`` ISIC 2017 pairs (images/ + masks/); skips without them."""
    if not (ISIC / "images").is_dir():
        pytest.skip("../shared/data/isic2017 is absent")
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for image in sorted((ISIC / "images").glob("*.jpg"))[:n]:
        mask = ISIC / "masks" / f"{image.stem}_segmentation.png"
        (root / "images" / image.name).symlink_to(image)
        (root / "masks" / mask.name).symlink_to(mask)
    return root


@pytest.fixture(scope="session")
def isic_subset():
    """The ``_isic_subset(root, n)`` builder."""
    return _isic_subset


def _train_tiny(data: Path, out: Path, model: str = "test_unet", **overrides) -> Path:
    """Train ``model`` for one CPU epoch at 32x32 (overridable); returns its checkpoint_best.pt."""
    options = dict(
        data=str(data),
        out=str(out),
        model=model,
        epochs=1,
        img_size=32,
        batch_size=4,
        workers=0,
        device="cpu",
        progress=False,
        export=False,
    )
    options.update(overrides)
    train(resolve_config(None, **options))
    return out / "checkpoint_best.pt"


@pytest.fixture(scope="session")
def train_tiny():
    """The ``_train_tiny(data, out, model, **overrides)`` helper."""
    return _train_tiny
