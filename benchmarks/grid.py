"""What the variant-grid benchmarks share (``mask_recovery.py``, ``calibration.py``): their common command-line
options, the ``--list`` / unknown-variant handling, and the mean +- sd table over seeds.

Both scripts run as ``python benchmarks/<name>.py``, so this module is found next to them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence

import pandas as pd


def grid_parser(description: str | None, variants: Mapping, out: str, skip_key: str) -> argparse.ArgumentParser:
    """A parser with ``--variants --seeds --threads --out --skip-done --list``; add the script's own options."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(variants))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=out)
    parser.add_argument("--skip-done", action="store_true", help=f"skip ({skip_key}) rows already in --out")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    return parser


def listed(parser: argparse.ArgumentParser, args: argparse.Namespace, variants: Mapping,
           describe: Callable[[str], object]) -> bool:
    """Print the variants (``--list``: True, the script stops) or reject unknown ones (a usage error)."""
    if args.list:
        for name in variants:
            print(f"{name:24s} {describe(name)}")
        return True
    unknown = sorted(set(args.variants) - set(variants))
    if unknown:
        parser.error(f"unknown variants {unknown}; see --list")
    return False


def seed_summary(rows: pd.DataFrame, by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """``mean +- sd`` over the seeds of each group of ``by``, for the ``metrics`` present, and the seed count."""
    grouped = rows.groupby(list(by), sort=False)[[m for m in metrics if m in rows]]
    mean, sd = grouped.mean(), grouped.std().fillna(0.0)
    table = mean.round(3).astype(str) + " +- " + sd.round(3).astype(str)
    table["seeds"] = grouped.size()
    return table
