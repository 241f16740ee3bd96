"""``mixgan`` command line: one module per sub-command, each with ``add_parser`` and ``run``.

The CLI parses, calls the library and prints. Every MixganError becomes one line on
stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import MixganError
from . import classifier, cluster, evaluate, explore, info, recipes, report, sample, tradeoff, train

COMMANDS = [train, sample, info, recipes, evaluate, classifier, cluster, tradeoff, report, explore]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixgan", description="Mixture GANs: GM-GAN, cGAN, AC-GAN, IC-GAN.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"mixgan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub).set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except MixganError as exc:
        print(f"mixgan: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and friends
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("mixgan: interrupted", file=sys.stderr)
        return 130
