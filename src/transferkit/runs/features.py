"""Feature transfer as an export: frozen features (through the cache) with ids and labels, for other tools."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..backbones.base import Backbone
from ..data.dataset import Dataset
from ..errors import ConfigError
from ..features.cache import FeatureCache
from ..features.inputs import Inputs


def export_features(backbone: Backbone, ds: Dataset, output: str | Path, batch_size: int = 64,
                    cache: FeatureCache | None = None, progress: bool = True) -> Path:
    """Write ``.npz`` (features, ids, labels) or ``.parquet`` (id, label, f0..fD-1) atomically."""
    out = Path(output)
    kind = out.suffix.lower()
    if kind not in (".npz", ".parquet"):
        raise ConfigError(f"Output '{out}' must end in .npz or .parquet.")
    feats = (cache or FeatureCache()).get_or_compute(backbone, Inputs(ds, backbone), batch_size, "extract",
                                                      progress=progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=kind + ".tmp")
    os.close(fd)
    labels = None if ds.y is None else np.asarray([str(v) for v in ds.y])
    if kind == ".npz":
        arrays = {"features": feats, "ids": np.asarray(ds.ids)}
        if labels is not None:
            arrays["labels"] = labels
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    else:
        import pandas as pd

        df = pd.DataFrame(feats, columns=[f"f{i}" for i in range(feats.shape[1])])
        df.insert(0, "id", ds.ids)
        if labels is not None:
            df.insert(1, "label", labels)
        df.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    return out
