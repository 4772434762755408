"""The ``ferrotile`` program (console script and ``python -m ferrotile``): ``serve`` first
restarts itself with glibc tuned for large copies (:mod:`ferrotile.memcpy_tuning`), before the
command line interface and the server are imported (~1.3 s that a restart would pay twice)."""

from __future__ import annotations

import sys

from ferrotile.memcpy_tuning import restart_with_tuned_copies

__all__ = ["main"]


def main() -> int:
    if sys.argv[1:2] == ["serve"]:
        restart_with_tuned_copies()
    from ferrotile.cli import main as run_command

    return run_command()
