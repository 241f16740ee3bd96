"""The one exception type that means "the user gave us something wrong".

The library raises :class:`MixganError` with a one-line message naming the problem;
the CLI turns it into ``mixgan: error: <message>`` on stderr and exit status 2.
"""


class MixganError(Exception):
    """Bad input: a setting, a data file, a checkpoint or a run directory."""
