"""mixgan report: render RUN/report.html from what the run directory holds."""
from __future__ import annotations

import argparse

from ..report import write_report


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="write report.html for a run",
                       description="Sample grids, metrics, clustering and trade-off of a run, as one HTML page.")
    p.add_argument("run", help="run directory")
    return p


def run(args) -> int:
    print(f"report: {write_report(args.run)}")
    return 0
