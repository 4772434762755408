"""Every flag of ``register`` and ``serve directory`` is documented in ``--help``."""

from __future__ import annotations

import subprocess
import sys


def help_text(*command: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ferrotile", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_register_help() -> None:
    text = help_text("register")
    for flag in ("URL", "DIR", "--prefix", "--watch", "--api-key", "--ext", "--workers"):
        assert flag in text


def test_serve_directory_help() -> None:
    text = help_text("serve", "directory")
    for flag in ("DIR", "--watch", "--public", "--api-key", "--ext", "--host", "--port"):
        assert flag in text
