"""The one exception type that the command line turns into a clean error message."""

from __future__ import annotations


class BrainsegError(Exception):
    """Bad input or configuration: the message names the file (or key) and what is wrong.

    The CLI prints it as a single line and exits with status 1, without a traceback.
    """
