"""mixgan classifier: train or describe a dataset's reference classifier (the metrics' feature space)."""
from __future__ import annotations

import argparse

from ..errors import MixganError
from .common import BarProgress, add_device_option


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("classifier", help="the reference classifier of a dataset",
                       description="Train (once; it is cached under $MIXGAN_CACHE) or describe the reference "
                                   "classifier whose features and probabilities the metrics use.")
    p.add_argument("action", choices=["train", "info"])
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-dir", default="")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_option(p)
    return p


def run(args) -> int:
    from ..data import load_dataset
    from ..metrics.classifier import _load_classifier, classifier_dir, get_classifier
    from ..training.dist import resolve_device

    data = load_dataset(args.dataset, args.data_dir)
    if not data.is_image:
        raise MixganError(f"dataset '{data.name}' holds points, not images: it has no reference classifier")
    if args.action == "info":
        cls = _load_classifier(classifier_dir(data))
        if cls is None:
            raise MixganError(f"no cached classifier for {data.name} yet (run: mixgan classifier train "
                              f"--dataset {args.dataset})")
    else:
        progress = None if args.quiet else BarProgress()
        cls = get_classifier(data, progress=progress, device=resolve_device(args.device))
        if progress is not None:
            progress.close()
    m = cls.meta
    print(f"dataset:       {m['dataset']} (fingerprint {m['fingerprint']})")
    print(f"test accuracy: {m['accuracy']:.4f} on {m['n_test']} test images")
    print(f"trained on:    {m['n_train']} images, {m['epochs']} epochs, seed {m['seed']}")
    print(f"features:      {cls.net.head.in_features}-d penultimate layer, {m['num_classes']} classes")
    print(f"cached in:     {cls.path}")
    return 0
