"""``transferkit export``: a run as an ONNX graph (fp32 / int8) or a transformers folder, checked against the run."""
from __future__ import annotations

import argparse

COMMAND = "export"
HELP = "export a run as ONNX (fp32 / int8) or a transformers folder, with a parity check and a model card"
EPILOG = ("Exit codes: 0 written and matching the run; 2 refused (a run the format cannot express, an existing "
          "folder, bad input: nothing written); 3 written but the parity check failed (kept for inspection, marked "
          "in parity.json and README.md: do not deploy it).")

HINTS = {"onnx-int8": " The fp32 --format onnx matches the run to float rounding."}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..export.formats import FORMATS

    formats = "; ".join(f"{n}: {FORMATS.help(n)}" for n in FORMATS.names())
    p = subparsers.add_parser(COMMAND, help=HELP, epilog=EPILOG, description=(
        "Write RUN's model with the files that build its inputs, parity.json (the export run by its own runtime "
        "against the run's PyTorch predictions) and a README.md model card into a new folder."))
    p.add_argument("run", help="a run folder written by `transferkit fit`")
    p.add_argument("--format", default="onnx", help=f"{formats} (default: onnx)")
    p.add_argument("-o", "--out", help="the export folder, which must not exist (default: RUN/export-FORMAT)")
    p.add_argument("--sample", metavar="DATA", help="inputs for the parity check: image files / a folder, a .txt "
                                                    "(one text per line) or a table; its first 64 rows (default: "
                                                    "synthetic inputs)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export folder")


def run(args: argparse.Namespace) -> int:
    import sys
    import warnings

    from ..export.api import PARITY_FAILED_EXIT, export_run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a failed parity is reported below, louder
        result = export_run(args.run, args.format, args.out, sample=args.sample, overwrite=args.overwrite,
                            progress=not args.quiet)
    print(result.parity.summary())
    print(f"wrote {result.path}")
    if not result.ok:
        print(f"transferkit: PARITY FAILED: the {result.format} export disagrees with its run "
              f"({'; '.join(result.parity.failures)}). It is kept in {result.path} for inspection; do not deploy "
              f"it.{HINTS.get(result.format, '')}", file=sys.stderr)
        return PARITY_FAILED_EXIT
    return 0
