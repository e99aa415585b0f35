"""Image jobs: transferkit fine-tune vs a plain timm / PyTorch loop of EfficientNet-Lite0 (same splits, budget)."""
from __future__ import annotations

from typing import Any

from common import Timer, images, macro_f1

SIZE = 64
IMG = {"batch": 32, "lr": 1e-3, "weight_decay": 0.01, "warmup": 0.1}


def _epochs(name: str, quick: bool) -> int:
    return 1 if quick else (3 if name == "digits" else 2)


def tk_image(quick: bool, threads: int, name: str, seed: int = 0, overrides: dict | None = None) -> dict[str, Any]:
    """transferkit's fine-tune at the peer's budget; ``overrides``: FitConfig keys for ablations (e.g. layer_decay);
    every other setting is transferkit's default."""
    import tempfile

    from transferkit import FitConfig, fit
    from transferkit.data import from_arrays
    from transferkit.strategies import FeatureCache

    d = images(name, quick, seed)
    X, y, vmax = d["X"], d["y"], d["value_max"]
    part = {k: from_arrays(X[d[k]], y[d[k]], value_max=vmax) for k in ("train", "val", "test")}
    ep = _epochs(name, quick)
    cfg = FitConfig.from_dict({**dict(backbone="packaged:efficientnet_lite0", strategy="fine-tune", image_size=SIZE, epochs=ep,
                    batch_size=IMG["batch"], lr=IMG["lr"], weight_decay=IMG["weight_decay"], warmup=IMG["warmup"],
                    min_steps=0, patience=ep, seed=seed, num_threads=threads), **(overrides or {})})
    with Timer() as t, tempfile.TemporaryDirectory() as tmp:
        r = fit(cfg, train=part["train"], val=part["val"], test=part["test"], save=False, progress=False,
                cache=FeatureCache(tmp))
    n = len(d["train"])
    return {"metric": r.metrics["macro_f1"], "compute_s": t.seconds, "train_s": r.details["fit_seconds"],
            "throughput": n * ep / r.details["fit_seconds"], "throughput_unit": "train img/s", "n_train": n,
            "settings": {**IMG, "epochs": ep, "size": SIZE, "training": cfg.training.to_dict(),
                         "overrides": overrides or {}}}


def timm_loop(quick: bool, threads: int, name: str, seed: int = 0, overrides: dict | None = None) -> dict[str, Any]:
    """The loop a user copies from a tutorial: timm model with a new head, AdamW, cosine schedule,
    cross-entropy, evaluation on validation after each epoch (best weights kept), then the test set."""
    import copy
    import math

    import numpy as np
    import timm
    import torch
    import torch.nn.functional as F

    from transferkit.backbones.packaged import lite_weights_path, rename_lukemelas_to_timm

    d = images(name, quick, seed)
    X, y, vmax = d["X"], d["y"], d["value_max"]
    ep = _epochs(name, quick)
    torch.manual_seed(seed)
    with Timer() as t:
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        state = rename_lukemelas_to_timm(torch.load(lite_weights_path("efficientnet_lite0"), map_location="cpu",
                                                    weights_only=True), model)
        model.load_state_dict(state)
        model.reset_classifier(10)

        def to_tensor(idx):
            x = torch.as_tensor(X[idx], dtype=torch.float32).unsqueeze(1) / vmax
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
            return (x - 0.5) / 0.5, torch.as_tensor(y[idx])

        xtr, ytr = to_tensor(d["train"])
        xva, yva = to_tensor(d["val"])
        xte, yte = to_tensor(d["test"])
        opt = torch.optim.AdamW(model.parameters(), lr=IMG["lr"], weight_decay=IMG["weight_decay"])
        steps = ep * math.ceil(len(xtr) / IMG["batch"])
        warm = int(IMG["warmup"] * steps)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / max(warm, 1) if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(steps - warm, 1))))

        def predict(x):
            model.eval()
            with torch.no_grad():
                return torch.cat([model(x[i:i + 64]) for i in range(0, len(x), 64)]).argmax(1).numpy()

        best, best_state = -1.0, None
        with Timer() as ttrain:
            for _ in range(ep):
                model.train()
                perm = torch.randperm(len(xtr))
                for i in range(0, len(xtr), IMG["batch"]):
                    b = perm[i:i + IMG["batch"]]
                    loss = F.cross_entropy(model(xtr[b]), ytr[b])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                s = macro_f1(yva.numpy(), predict(xva))
                if s > best:
                    best, best_state = s, copy.deepcopy(model.state_dict())
        model.load_state_dict(best_state)
        f1 = macro_f1(yte.numpy(), predict(xte))
    n = len(d["train"])
    return {"metric": f1, "compute_s": t.seconds, "train_s": ttrain.seconds, "throughput": n * ep / ttrain.seconds,
            "throughput_unit": "train img/s", "n_train": n, "settings": {**IMG, "epochs": ep, "size": SIZE},
            "val_best": float(best), "classes": int(np.unique(y).size)}
