"""Helpers shared by the tests (imported as ``tests.helpers``)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / ".." / "shared" / "data"
MNIST_PATH = DATA_DIR / "mnist10k.npz"
SPAM_PATH = DATA_DIR / "spamassassin.jsonl.gz"

IMAGE_SIZE = 32
MAX_LENGTH = 32
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def mnist_subset(mnist, classes, per_class, offset=0):
    """The first ``per_class`` images (after ``offset``) of each class, interleaved by class."""
    images, labels = mnist
    idx = []
    for c in classes:
        idx.extend(np.flatnonzero(labels == c)[offset:offset + per_class])
    idx = np.asarray(idx)
    return images[idx], labels[idx]


def save_png_folder(root: Path, images: np.ndarray, labels, ext: str = ".png") -> Path:
    """root/<label>/<i>.png from uint8 arrays."""
    for i, (img, lab) in enumerate(zip(images, labels)):
        d = root / str(lab)
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(img, dtype=np.uint8)).save(d / f"img{i:04d}{ext}")
    return root


def cli(*argv) -> int:
    from transferkit.cli.main import main

    return main([str(a) for a in argv])


def assert_png(path: Path) -> None:
    """A real, non-empty PNG file."""
    assert path.is_file(), f"{path} missing"
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    with Image.open(path) as im:
        assert im.size[0] > 50 and im.size[1] > 50


def markdown_images(md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)


def one_line_error(err: str) -> str:
    """The CLI's error line; asserts there is exactly one and no traceback."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("transferkit: error:")]
    assert len(lines) == 1, err
    return lines[0]
