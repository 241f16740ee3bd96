"""The one exception type that means "the user gave us something wrong".

The library raises :class:`MixganError` with a one-line message naming the problem;
the CLI turns it into ``mixgan: error: <message>`` on stderr and exit status 2.
"""


class MixganError(Exception):
    """Bad input: a setting, a data file, a checkpoint or a run directory."""


class MixganWarning(UserWarning):
    """Something the user should know that did not stop the work (a damaged checkpoint skipped)."""


class Interrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after saving a checkpoint at ``step``.

    The CLI exits with 128 + ``signum`` (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, step: int, signum: int, run: str):
        super().__init__(f"interrupted at step {step}; checkpoint saved, continue with --resume --out {run}")
        self.step, self.signum, self.run = step, signum, run
