"""mixgan tradeoff: sweep the latent scale s and measure quality, diversity, precision, recall, FID."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..analysis import tradeoff_sweep
from ..analysis.tradeoff import SWEEP_METRICS, scale_grid
from ..api import load
from ..config import capped
from ..errors import MixganError
from ..viz import fmt, image_grid, save_png, tradeoff_plot
from .common import BarProgress, add_analysis_options, check_seed, write_json


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("tradeoff", help="quality-diversity sweep over latent scales",
                       description="Scale every latent covariance by s^2 and measure each setting.")
    p.add_argument("run", help="run directory")
    p.add_argument("--scales", default="0.25,0.5,0.75,1,1.5,2")
    p.add_argument("--n", type=int, default=2000, help="samples per scale")
    add_analysis_options(p)
    return p


def run(args) -> int:
    try:
        scales = [float(s) for s in args.scales.split(",")]
    except ValueError:
        raise MixganError(f"--scales must be comma-separated numbers, got '{args.scales}'") from None
    if not all(math.isfinite(s) and s > 0 for s in scales):
        raise MixganError(f"--scales must be finite numbers > 0, got '{args.scales}'")
    check_seed(args.seed)
    r = load(args.run, device=args.device)
    out = tradeoff_sweep(r.model, r.data, scales, n=capped(args.n), seed=args.seed,
                         progress=None if args.quiet else BarProgress())
    rd = Path(args.run)
    if r.data.is_image:  # the paper's figure: one grid per scale, same noise
        out["grids"], out["grid_labels"] = [], r.model.grid_labels()
        for i, s in enumerate(scales):
            x, rows = scale_grid(r.model, s, seed=args.seed)
            save_png(image_grid(x, rows), rd / f"tradeoff-grid-{i}.png")
            out["grids"].append(f"tradeoff-grid-{i}.png")
    write_json(rd / "tradeoff.json", out)
    if args.json:
        write_json(args.json, out)
    if "quality" in out:
        tradeoff_plot(out["quality"], out["diversity"], scales, rd / "tradeoff.png",
                      title=f"{r.cfg.model.name} {r.cfg.data.dataset}")
    keys = [k for k in SWEEP_METRICS if k in out]
    print(f"feature network: {out.get('feature_net')}")
    print("scale   " + "".join(f"{k:<11}" for k in keys))
    for i, s in enumerate(scales):
        print(f"{s:<7g} " + "".join(f"{fmt(out[k][i], '.4f'):<11}" for k in keys))
    print(f"wrote {rd / 'tradeoff.json'}" + (f", {rd / 'tradeoff.png'}" if "quality" in out else ""))
    return 0
