"""``mixgan`` command line: one module per sub-command, each with ``add_parser`` and ``run``.

The CLI parses, calls the library and prints. Every MixganError, and every failed write (a full
disk, a read-only folder), becomes one line on stderr and exit status 2; a MixganWarning one
``mixgan: warning:`` line. Training stopped by SIGINT or SIGTERM exits with 130 or 143 once its
checkpoint is saved.
"""
from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
import warnings

from ..errors import Interrupted, MixganError, MixganWarning
from . import classifier, cluster, data, evaluate, explore, info, recipes, report, sample, tradeoff, train

COMMANDS = [train, sample, info, recipes, evaluate, classifier, cluster, tradeoff, report, explore, data]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixgan", description="Mixture GANs: GM-GAN, cGAN, AC-GAN, IC-GAN.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"mixgan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub).set_defaults(handler=module.run)
    return parser


WRITE_ERRORS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG)


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    if issubclass(category, MixganWarning):
        print(f"mixgan: warning: {message}", file=sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


class _Terminated(KeyboardInterrupt):
    """SIGTERM outside the training loop (which saves a checkpoint first)."""


def _terminate(signum, frame):
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    from .. import progress
    from .common import TaskReporter

    previous_reporter = progress.set_reporter(TaskReporter())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", MixganWarning)
            warnings.showwarning = _show_warning
            return args.handler(args) or 0
    except MixganError as exc:
        print(f"mixgan: error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        from ..training.dist import launch_rank

        if launch_rank() == 0:
            print(f"mixgan: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except BrokenPipeError:  # output piped into `head` and friends
        sys.stderr.close()
        return 0
    except KeyboardInterrupt as exc:
        print("mixgan: interrupted", file=sys.stderr)
        return 143 if isinstance(exc, _Terminated) else 130
    except OSError as exc:
        if exc.errno not in WRITE_ERRORS:
            raise
        print(f"mixgan: error: cannot write {exc.filename or 'the output'} ({exc.strerror})", file=sys.stderr)
        return 2
    finally:
        progress.set_reporter(previous_reporter)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
