"""The one exception type that the command line turns into a clean error message."""

from __future__ import annotations


class BrainsegError(Exception):
    """Bad input or configuration: the message names the file (or key) and what is wrong.

    The CLI prints it as a single line and exits with status 1, without a traceback.
    """


class Stopped(KeyboardInterrupt):
    """SIGTERM (what Snakemake, Slurm and `kill` send), raised in the main thread as Ctrl-C
    raises KeyboardInterrupt: every `finally` runs on the way out, so the temporary files
    of atomic writes are removed and nothing half-written is left."""


def stop_on_sigterm() -> None:
    """Turn SIGTERM into `Stopped` in this process (the CLI, and the pool's workers)."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise Stopped(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
