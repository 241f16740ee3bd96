"""mixgan data pack | verify: uint8 shards for data larger than memory (train with --dataset shards:DIR)."""
from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("data", help="pack a dataset into shards, verify shards",
                       description="Pack any dataset mixgan reads into uint8 .npy shards with a manifest, "
                                   "or verify the SHA-256 of packed shards.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    pk = actions.add_parser("pack", help="write SRC as shards into OUT",
                            description="SRC: a folder of images (class sub-folders give labels), or a "
                                        "dataset name: fashion-mnist, mnist, cifar10 (with --data-dir), npz:PATH.")
    pk.add_argument("src", help="folder of images, or a dataset name")
    pk.add_argument("out", help="folder to write the shards and manifest.json into (new or empty)")
    pk.add_argument("--resolution", type=int, default=0,
                    help="image side in pixels (default: as the data comes; a folder: its square size, else 64)")
    pk.add_argument("--channels", type=int, default=0, choices=(0, 1, 3),
                    help="1 grey or 3 RGB (default: as the data comes; a folder: 3 if any image has colour)")
    pk.add_argument("--shard-size", type=int, default=10_000, help="images per shard (default 10000)")
    pk.add_argument("--data-dir", default="", help="folder of a named dataset's files")
    pk.add_argument("--test-fraction", type=float, default=0.2,
                    help="share held out as the test split, for data without one (default 0.2)")
    pk.add_argument("--seed", type=int, default=0, help="seed of that split")
    pk.add_argument("--background", default="white",
                    help="colour a folder's transparent pixels are laid on: white (default), black or like #808080")
    pk.add_argument("--quiet", action="store_true", help="no progress line")
    vf = actions.add_parser("verify", help="check every shard's SHA-256 against the manifest")
    vf.add_argument("folder", help="folder written by `mixgan data pack`")
    return p


def _progress(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        print(f"\r{done}/{total} images", end="" if done < total else "\n", file=sys.stderr, flush=True)

    return show


def run(args) -> int:
    from ..data.pack import pack
    from ..data.shards import verify
    from ..data.base import shown
    from ..errors import MixganError

    if args.action == "verify":
        manifest = verify(args.folder)
        shards = sum(len(manifest["splits"][s]["shards"]) for s in ("train", "test"))
        print(f"ok: {shards} shards, {manifest['splits']['train']['count']} train and "
              f"{manifest['splits']['test']['count']} test images of shape {tuple(manifest['shape'])}")
        return 0
    if args.resolution and args.resolution < 8:
        raise MixganError(f"--resolution must be >= 8, got {args.resolution}")
    result = pack(args.src, args.out, args.resolution, args.channels, args.shard_size, args.data_dir,
                  args.test_fraction, args.seed, _progress(args.quiet), background=args.background)
    m = result.manifest
    shards = sum(len(m["splits"][s]["shards"]) for s in ("train", "test"))
    print(f"packed: {m['splits']['train']['count']} train and {m['splits']['test']['count']} test images "
          f"of shape {tuple(m['shape'])} into {shards} shards in {shown(args.out)}")
    print(f"train with: --dataset shards:{shown(args.out)}")
    return 0
