"""Nothing in the package can unpickle a file: scanned in its syntax tree, so a new call site fails this test."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "transferkit"
PICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def problems(source: str, where: str) -> list[str]:
    """Every unsafe load in ``source``: pickle-family imports, ``torch.load`` without ``weights_only=True``,
    ``np.load`` / ``numpy.load`` with ``allow_pickle=True``, ``pandas.read_pickle``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [f"{where}:{node.lineno} imports {a.name}" for a in node.names
                    if a.name.split(".")[0] in PICKLING_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLING_MODULES:
            out.append(f"{where}:{node.lineno} imports from {node.module}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            last = name.rsplit(".", 1)[-1]
            if last == "load" and name.split(".")[0] == "torch" and not _is_true(_keyword(node, "weights_only")):
                out.append(f"{where}:{node.lineno} {name} without weights_only=True")
            if last == "load" and name.split(".")[0] in ("np", "numpy") and _is_true(_keyword(node, "allow_pickle")):
                out.append(f"{where}:{node.lineno} {name} with allow_pickle=True")
            if last in ("read_pickle", "load_pickle"):
                out.append(f"{where}:{node.lineno} {name}")
    return out


@pytest.mark.parametrize("source, bad", [
    ("import pickle\npickle.load(open('x', 'rb'))", True),
    ("from joblib import load", True),
    ("import torch\ntorch.load('m.pt')", True),
    ("import torch\ntorch.load('m.pt', weights_only=False)", True),
    ("import torch\ntorch.load('m.pt', map_location='cpu', weights_only=True)", False),
    ("import numpy as np\nnp.load('f.npy', allow_pickle=True)", True),
    ("import numpy as np\nnp.load('f.npy', allow_pickle=False)", False),
    ("import pandas as pd\npd.read_pickle('f')", True),
    ("from safetensors.torch import load_file\nload_file('m.safetensors')", False),
])
def test_the_scanner_finds_unsafe_loads(source, bad):
    assert bool(problems(source, "x.py")) is bad


def test_package_never_unpickles():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50
    found = [p for f in files for p in problems(f.read_text(encoding="utf-8"), str(f.relative_to(PACKAGE.parent)))]
    assert found == []
