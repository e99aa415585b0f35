"""Fine-tuning (optionally with the bottom K layer groups frozen) and LP-FT (Kumar et al., 2022:
"Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution")."""
from __future__ import annotations

from ..engine.model import TransferModel
from .base import FitContext, StrategyResult
from .linear_probe import probe_head


def fit_fine_tune(ctx: FitContext) -> StrategyResult:
    model = TransferModel(ctx.backbone, ctx.n_out, ctx.config.head)
    hist = ctx.fit_model(model)
    return StrategyResult(model, hist, {"best_epoch": hist.best_epoch, "stopped_early": hist.stopped_early})


def fit_lp_ft(ctx: FitContext) -> StrategyResult:
    """Linear probe first; then fine-tune everything starting from that head.

    BatchNorm statistics stay frozen during the fine-tune stage, so the features the probe was fitted
    on do not jump when the model enters training mode (which otherwise wrecks the probe's head).
    The fine-tune stage uses a tenth of the configured learning rate (a fitted head needs only small
    steps), and the probe itself (epoch 0) competes for the best validation checkpoint.
    """
    model = TransferModel(ctx.backbone, ctx.n_out, "linear")
    probe, _ = probe_head(ctx, model)
    hist = ctx.fit_model(model, ctx.training(lr=ctx.training().lr * 0.1), freeze_bn_stats=True, desc="lp-ft",
                         eval_initial=True)
    return StrategyResult(model, hist, {"probe": probe, "best_epoch": hist.best_epoch,
                                        "stopped_early": hist.stopped_early})
