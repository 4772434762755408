"""When ``ferrotile serve`` restarts itself with glibc tuned for large copies
(ferrotile/memcpy_tuning.py), and with which environment."""

from __future__ import annotations

import platform
import sys

import pytest

from ferrotile.memcpy_tuning import OPT_OUT_ENV, THRESHOLD_TUNABLE, tuned_environment

SETTING = f"{THRESHOLD_TUNABLE}={1 << 62}"
glibc_x86_linux = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64" or platform.libc_ver()[0] != "glibc",
    reason="the tunable is glibc's, for x86-64",
)


@glibc_x86_linux
def test_amd_processors_get_the_tunable_and_keep_the_rest() -> None:
    assert tuned_environment({"HOME": "/h"}, amd=True) == {"HOME": "/h", "GLIBC_TUNABLES": SETTING}
    other = "glibc.malloc.arena_max=2"
    tuned = tuned_environment({"GLIBC_TUNABLES": other}, amd=True)
    assert tuned == {"GLIBC_TUNABLES": f"{other}:{SETTING}"}


def test_other_processors_the_users_own_setting_and_the_opt_out_stay_as_they_are() -> None:
    assert tuned_environment({"HOME": "/h"}, amd=False) is None
    assert tuned_environment({"GLIBC_TUNABLES": f"{THRESHOLD_TUNABLE}=8192"}, amd=True) is None
    assert tuned_environment({"GLIBC_TUNABLES": SETTING}, amd=True) is None  # restarted already
    assert tuned_environment({OPT_OUT_ENV: "1"}, amd=True) is None
