"""Shared fixtures: real data (digits, MNIST, SpamAssassin), session-wide backbones, an isolated feature cache.

The suite runs fully offline on CPU. Thread pools are pinned to one thread: on a shared 2-core machine,
multi-threaded OpenBLAS / OpenMP spin-waiting made small fits 10-100x slower (measured: a 140x1280 logistic
regression took 4 s instead of 0.03 s; one EfficientNet-Lite0 step at 32 px 14 s instead of 0.2 s).
"""
from __future__ import annotations

import os

# Must happen before numpy / torch are imported anywhere.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import gzip  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------------------
# environment isolation
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory):
    """Feature cache in a tmp dir (never ~/.cache), one BLAS / torch thread for every fit."""
    from threadpoolctl import threadpool_limits

    import transferkit.pipeline as pipeline

    cache = tmp_path_factory.mktemp("feature_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("TRANSFERKIT_CACHE", str(cache))
    mp.setenv("HF_HUB_OFFLINE", "1")
    # fit() calls set_threads(None) -> os.cpu_count() threads; keep one unless a config asks for more.
    mp.setattr(pipeline, "set_threads", lambda n: torch.set_num_threads(int(n or 1)))
    with threadpool_limits(limits=1):
        yield cache
    mp.undo()


# ---------------------------------------------------------------------------------------------------------
# real data
# ---------------------------------------------------------------------------------------------------------
def _shared(name: str) -> Path:
    p = SHARED_DATA / name
    if not p.exists():
        pytest.skip(f"shared test data {p} not found (expected a sibling 'shared/data' folder of the repo)")
    return p


@pytest.fixture(scope="session")
def digits():
    """(images float [N,8,8] in 0..16, targets int) of scikit-learn's digits."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target


def stratified_pick(y: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]
    return np.sort(np.concatenate(idx))


@pytest.fixture(scope="session")
def digits150(digits):
    """150 digits, 15 per class: (X, y)."""
    X, y = digits
    idx = stratified_pick(y, 15, seed=0)
    return X[idx], y[idx]


@pytest.fixture(scope="session")
def mnist():
    """(images uint8 [10000,28,28], labels int [10000]); sorted by label, so sample with care."""
    d = np.load(_shared("mnist10k.npz"))
    return d["images"], d["labels"]


@pytest.fixture(scope="session")
def spam_records():
    """80 ham + 80 spam e-mails from SpamAssassin (bodies shortened), in a fixed shuffled order.
    Keys keep the file's order: id, group, label, subject, body."""
    path = _shared("spamassassin.jsonl.gz")
    ham, spam = [], []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            bucket = spam if r["label"] == "spam" else ham
            if len(bucket) < 400:
                bucket.append(r)
            if len(ham) >= 400 and len(spam) >= 400:
                break
    rng = np.random.default_rng(0)
    pick = [ham[i] for i in rng.permutation(len(ham))[:80]] + [spam[i] for i in rng.permutation(len(spam))[:80]]
    pick = [pick[i] for i in rng.permutation(len(pick))]
    return [{**r, "body": r["body"][:400]} for r in pick]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path


@pytest.fixture(scope="session")
def spam_jsonl(tmp_path_factory, spam_records) -> Path:
    """The 160 SpamAssassin records as a JSONL table (fields id, group, label, subject, body)."""
    return write_jsonl(tmp_path_factory.mktemp("spam") / "mail.jsonl", spam_records)


def save_image_folder(root: Path, images: np.ndarray, labels, fmt: str = "png") -> Path:
    """Write uint8 images [N,H,W] as ROOT/<label>/<i>.<fmt>."""
    for i, (img, lab) in enumerate(zip(images, labels)):
        d = root / str(lab)
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(img, dtype=np.uint8)).save(d / f"{i:04d}.{fmt}")
    return root


@pytest.fixture(scope="session")
def mnist_folder(tmp_path_factory, mnist) -> Path:
    """Real MNIST digits 0, 1, 2 (20 each) as grayscale PNGs in class sub-folders."""
    X, y = mnist
    idx = np.flatnonzero(np.isin(y, [0, 1, 2]))
    idx = idx[stratified_pick(y[idx], 20, seed=1)]
    return save_image_folder(tmp_path_factory.mktemp("mnist_folder") / "digits", X[idx], y[idx])


def rotated_mnist(mnist, n: int = 150, size: int = 32, seed: int = 0, max_angle: float = 60.0):
    """A real regression task: MNIST digits rotated by a random angle; the target is the angle (degrees)."""
    X, _ = mnist
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(X))[:n]
    angles = rng.uniform(-max_angle, max_angle, n)
    out = np.stack([np.asarray(Image.fromarray(X[i]).resize((size, size), Image.Resampling.BILINEAR)
                               .rotate(float(a), resample=Image.Resampling.BILINEAR)) for i, a in zip(idx, angles)])
    return out, angles


@pytest.fixture(scope="session")
def rotation_task(mnist):
    """(images uint8 [150,32,32], angles in degrees in [-60, 60])."""
    return rotated_mnist(mnist)


# ---------------------------------------------------------------------------------------------------------
# backbones (created once, in eval mode; tests must not train them in place)
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def lite0():
    """Packaged EfficientNet-Lite0 with 32 px preprocessing."""
    from transferkit.backbones import create_backbone

    return create_backbone("packaged:efficientnet_lite0", image_size=32).eval()


@pytest.fixture(scope="session")
def minilm():
    from transferkit.backbones import create_backbone

    return create_backbone("packaged:minilm-l6", max_length=32).eval()
