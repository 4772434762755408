"""Large memory copies without ``rep movsb`` on AMD processors, for ``ferrotile serve``.

glibc (2.36, Debian 12's) copies blocks of more than a few KiB with the ``rep movsb``
instruction on processors that advertise fast string moves. On the AMD EPYC machines this
project is measured on, such a copy is ~10x slower when its destination is not 64-byte aligned:
256 KiB in ~85-95 us instead of ~9 us. The data plane makes such copies for every frame (zstd's
output and the raw blocks of a stored chunk, a frame into its envelope), so a persisted 256 KiB
frame cost its writing thread ~235 us of CPU with glibc's default and ~150 us without ``rep
movsb`` (``bench/README.md``, "Copies without rep movsb").

glibc reads its tunables once, when the process starts, so ``ferrotile serve`` replaces itself
once (``exec``) with ``GLIBC_TUNABLES`` raising ``x86_rep_movsb_threshold`` past any copy; glibc
then uses its vector loop (non-temporal stores for the largest copies). Worker processes inherit
the variable. Nothing is changed where the user's ``GLIBC_TUNABLES`` already sets that tunable,
on other processors or C libraries, with ``FERROTILE_KEEP_MEMCPY=1``, or in the process of an
embedded :class:`~ferrotile.server.SimpleServer` (the user's own process).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "OPT_OUT_ENV",
    "THRESHOLD_TUNABLE",
    "amd_processor",
    "restart_with_tuned_copies",
    "tuned_environment",
]

#: The tunable, and a value past any copy this process makes.
THRESHOLD_TUNABLE = "glibc.cpu.x86_rep_movsb_threshold"
_NEVER = 1 << 62
#: Set to 1 to keep glibc's own choice.
OPT_OUT_ENV = "FERROTILE_KEEP_MEMCPY"


def amd_processor() -> bool:
    """Whether ``/proc/cpuinfo`` names AMD as the processor's vendor."""
    try:
        with Path("/proc/cpuinfo").open() as cpuinfo:
            for line in cpuinfo:
                if line.startswith("vendor_id"):
                    return "AuthenticAMD" in line
    except OSError:
        return False
    return False


def tuned_environment(
    environ: Mapping[str, str], *, amd: bool | None = None
) -> dict[str, str] | None:
    """The environment to restart with, or ``None`` when this process should stay as it is."""
    if environ.get(OPT_OUT_ENV) == "1":
        return None
    tunables = environ.get("GLIBC_TUNABLES", "")
    if THRESHOLD_TUNABLE in tunables:
        return None  # already tuned (by the restart, or by the user)
    glibc_x86 = platform.machine() == "x86_64" and platform.libc_ver()[0] == "glibc"
    if sys.platform != "linux" or not glibc_x86:
        return None
    if not (amd_processor() if amd is None else amd):
        return None
    setting = f"{THRESHOLD_TUNABLE}={_NEVER}"
    return {**environ, "GLIBC_TUNABLES": f"{tunables}:{setting}" if tunables else setting}


def restart_with_tuned_copies() -> None:
    """Replace this process by the same command with the tuned environment, if it needs one.

    Called first thing by ``ferrotile serve`` run as a program: nothing has been opened or
    created yet that the restart would leave behind."""
    environ = tuned_environment(os.environ)
    if environ is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, environ)
