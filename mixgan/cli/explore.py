"""mixgan explore: browse a run's Gaussians (classes, instances), latent scale and seed in a local page."""
from __future__ import annotations

import argparse

from .common import add_device_option
from .evaluate import checkpoint_arg


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("explore", help="browse a run's mixture in a local web page",
                       description="Serve a page on 127.0.0.1: pick a Gaussian (class, instance), slide the latent "
                                   "scale s and the seed, and see samples (click one to enlarge it) and their "
                                   "quality/diversity. Ctrl-C stops it.")
    p.add_argument("run", help="run directory")
    p.add_argument("--port", type=int, help="port on 127.0.0.1 (default 8765, or a free one where 8765 is taken; "
                                            "0: a free one)")
    p.add_argument("--step", help="the checkpoint to explore: a kept step, or 'best'; default the newest")
    add_device_option(p)
    return p


def run(args) -> int:
    from ..explore import open_server

    server = open_server(args.run, port=args.port, device=args.device, step=checkpoint_arg(args.run, args.step))
    print(f"explore: {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("explore: stopped")
    finally:
        server.server_close()
    return 0
