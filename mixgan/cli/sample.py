"""mixgan sample: draw samples from a trained run into an .npz (and a picture)."""
from __future__ import annotations

import argparse

from ..api import load
from ..viz import save_samples_picture
from .common import write_npz


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("sample", help="draw samples from a run", description="Draw samples from a trained run.")
    p.add_argument("run", help="run directory")
    p.add_argument("--n", type=int, default=2500)
    p.add_argument("--out", required=True, help="output .npz (x, and component/label/instance where they apply)")
    p.add_argument("--component", type=int, help="sample only this Gaussian")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every latent scale by S")
    p.add_argument("--class", dest="label", type=int, help="class to generate (class-conditional models)")
    p.add_argument("--grid", help="also write a PNG of the samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    return p


def run(args) -> int:
    from ..errors import MixganError

    if args.n < 1:
        raise MixganError(f"--n must be >= 1, got {args.n}")
    r = load(args.run, device=args.device)
    s = r.sample(args.n, component=args.component, scale=args.scale, label=args.label, seed=args.seed)
    arrays = s.arrays()
    arrays["x"] = arrays["x"].astype("float32")
    path = write_npz(args.out, arrays)
    print(f"wrote {len(s.x)} samples to {path}")
    if args.grid:
        shown = s.x[:100]
        save_samples_picture(shown, max(1, -(-len(shown) // 10)), args.grid, colors=s.component,
                             reference=None)
        print(f"wrote {args.grid}")
    return 0
