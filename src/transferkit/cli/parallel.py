"""``--nproc-per-node N`` for the commands that train (fit, pretrain, adapt, distill): one flag, one dispatch."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_nproc_flag(p: argparse.ArgumentParser, writes: str = "the run") -> None:
    p.add_argument("--nproc-per-node", type=int, default=None, metavar="N",
                   help="train data-parallel in N processes on this machine (torchrun; gloo on CPU, NCCL on CUDA) "
                   f"at the same global --batch-size; rank 0 writes {writes}")


def launch_if_asked(args: argparse.Namespace, command: str, config: Any,
                    check: Callable[[Any], Any] | None = None) -> int | None:
    """When ``--nproc-per-node N`` (N > 1) is given and this process is not yet a torchrun worker: check
    ``config`` here (a bad setting fails once, in one line, not once per process), re-run ``command`` under
    torchrun and return its exit status. Otherwise None: the caller trains in this process."""
    from ..distributed.ddp import distributed_env

    nproc = getattr(args, "nproc_per_node", None)
    if nproc is None or nproc == 1 or distributed_env() is not None:
        return None
    from ..distributed.launch import launch

    config.validate()
    if check is not None:
        check(config)
    return launch(command, config, nproc, getattr(args, "resume", None), bool(getattr(args, "quiet", False)))
