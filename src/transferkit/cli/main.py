"""The `transferkit` command: thin subcommands over the Python API."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ..errors import ConfigError, TrainingInterrupted, TransferkitError


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen command's own flags are built (building them imports its configs, which
    costs seconds for every command together), the others are listed with their help line."""
    ap = argparse.ArgumentParser(prog="transferkit", description="Transfer learning with honest evaluation.")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = ap.add_subparsers(dest="command", required=True)
    cmds = commands()
    words = list(sys.argv[1:] if argv is None else argv)
    chosen = next((w for w in words if not w.startswith("-")), None)
    for name, mod in cmds.items():
        if name == chosen or chosen not in cmds:
            mod.add_parser(sub)
        else:
            sub.add_parser(name, help=getattr(mod, "HELP", None))
    return ap


ORDER = ("fit", "evaluate", "predict", "serve", "compare", "tune", "rank", "adapt", "pretrain", "distill", "features", "export", "runs", "demo", "info")


def commands() -> dict:
    """Every sub-command is a module ``transferkit.cli.<name>`` with ``COMMAND``, ``add_parser(subparsers)`` and
    ``run(args) -> int``: adding a module adds the command (listed in ``ORDER`` first, then by name)."""
    import importlib
    import pkgutil

    from .. import cli

    found = {}
    for info in pkgutil.iter_modules(cli.__path__):
        if info.name in ("main", "__main__", "flags"):
            continue
        mod = importlib.import_module(f"{cli.__name__}.{info.name}")
        if hasattr(mod, "COMMAND"):
            found[mod.COMMAND] = mod
    rank = {n: i for i, n in enumerate(ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(ORDER)), kv[0])))


@contextmanager
def libraries_silenced(quiet: bool) -> Iterator[None]:
    """With ``--quiet``, also the progress bars that libraries draw themselves (the transformers weight loader,
    hub downloads) stay off; restored afterwards, so the Python API in the same process is unaffected."""
    if not quiet:
        yield
        return
    import huggingface_hub.utils as hub
    from transformers.utils import logging as hf_logging

    from ..data.images import progress_bars

    was_hf, was_hub = hf_logging.is_progress_bar_enabled(), not hub.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    hub.disable_progress_bars()
    try:
        with progress_bars(False):  # image decoding, wherever a loader runs
            yield
    finally:
        if was_hf:
            hf_logging.enable_progress_bar()
        if was_hub:
            hub.enable_progress_bars()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed a one-line usage error
        return int(e.code or 0)
    try:
        with libraries_silenced(args.quiet):
            return commands()[args.command].run(args)
    except TrainingInterrupted as e:
        print(f"transferkit: {e}", file=sys.stderr)
        return e.exit_code
    except TransferkitError as e:
        print(f"transferkit: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # output piped into `head` and the like
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("transferkit: interrupted; no run was written.", file=sys.stderr)
        return 130
    except (TypeError, ValueError) as e:
        if isinstance(e, TypeError) and "FitConfig" not in str(e):
            raise
        print(f"transferkit: error: {ConfigError(str(e))}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
