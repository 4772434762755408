"""The ``ferrotile register`` and ``ferrotile serve directory`` subcommands (flags as Tiled's)."""

from __future__ import annotations

import argparse
import sys
import threading
import time
import urllib.request
from typing import Any

from ferrotile.config import Settings
from ferrotile.register.http import RegisterError

_EXT_HELP = (
    "map a file extension to a media type, e.g. --ext .tif=image/tiff (repeatable); "
    "files of unknown type are skipped with a warning"
)


def add_register_parser(commands: Any) -> None:
    """Add ``register URL DIR`` to the top-level subcommands."""
    register = commands.add_parser(
        "register",
        help="register the files of a directory in a running server",
        description=(
            "Walk DIR and register what it holds (TIFF/JPEG/PNG/NPY files, numbered series of "
            "them as one array, HDF5, zarr, CSV, Parquet) in the server at URL, as "
            "`tiled register` does. Re-runs are incremental: unchanged files are skipped, "
            "changed ones updated, vanished ones removed."
        ),
    )
    register.add_argument("url", metavar="URL", help="the server, e.g. http://127.0.0.1:8000")
    register.add_argument("directory", metavar="DIR", help="the directory (or file) to register")
    register.add_argument(
        "--prefix",
        default="/",
        metavar="P",
        help="container path to register under, created if missing (default /)",
    )
    register.add_argument(
        "-w", "--watch", action="store_true", help="keep registering changes until Ctrl-C"
    )
    register.add_argument(
        "--api-key", help="the server's API key (default: $TILED_API_KEY or ?api_key= in URL)"
    )
    register.add_argument("--ext", action="append", default=[], metavar=".X=TYPE", help=_EXT_HELP)
    register.add_argument(
        "--workers", type=int, default=8, help="files described and sent at once (default 8)"
    )


def add_directory_parser(targets: Any) -> None:
    """Add ``serve directory DIR`` to the ``serve`` targets."""
    directory = targets.add_parser(
        "directory",
        help="serve the files of a directory (temporary catalog)",
        description=(
            "Serve DIR at once from a temporary catalog, and register its files in the "
            "background: nodes appear while the walk runs (subscribers of the root see "
            "container-child-created for each). With --watch, later changes are registered too."
        ),
    )
    directory.add_argument("directory", metavar="DIR", help="the directory to serve")
    directory.add_argument(
        "-w", "--watch", action="store_true", help="register changes to DIR while serving"
    )
    directory.add_argument(
        "--public", action="store_true", help="let anonymous clients read (not write)"
    )
    directory.add_argument(
        "--api-key", help="the API key clients must present (default: a random one, printed)"
    )
    directory.add_argument("--ext", action="append", default=[], metavar=".X=TYPE", help=_EXT_HELP)
    directory.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    directory.add_argument(
        "--port", type=int, default=8000, help="port to listen on (default 8000)"
    )


def _target(args: argparse.Namespace, url: str, api_key: str | None) -> Any:
    from ferrotile.register.run import Target, parse_ext_options

    try:
        ext_map = parse_ext_options(args.ext)
    except ValueError as exc:
        raise RegisterError(str(exc)) from None
    workers = getattr(args, "workers", 8)
    if workers < 1:
        raise RegisterError("--workers must be at least 1")
    prefix = getattr(args, "prefix", "/")
    return Target(url, args.directory, prefix, api_key, ext_map, workers)


def run_register(args: argparse.Namespace) -> None:
    """``ferrotile register``: one pass, or a pass and then changes with ``--watch``."""
    from ferrotile.register.run import open_api, register_pass
    from ferrotile.register.sync import default_describer
    from ferrotile.register.watch import watch

    target = _target(args, args.url, args.api_key)
    describe = default_describer()
    api = open_api(target)
    try:
        if args.watch:
            watch(api, target, describe=describe)
        else:
            register_pass(api, target, describe=describe, stream=sys.stderr)
    finally:
        api.close()


def check_directory_args(args: argparse.Namespace) -> None:
    """Fail before the server starts on a bad ``--ext`` or a missing reader."""
    from ferrotile.register.sync import default_describer

    _target(args, "http://127.0.0.1", None)
    default_describer()


def start_background_registration(args: argparse.Namespace, settings: Settings) -> None:
    """Register ``args.directory`` from a thread once the server answers ``/healthz``.

    The server runs in the foreground (Granian); this thread is a daemon, so it ends with it.
    """
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    host = f"[{host}]" if ":" in host else host
    url = f"http://{host}:{settings.port}"
    target = _target(args, url, settings.api_key)

    def run() -> None:
        from ferrotile.register.run import open_api, register_pass
        from ferrotile.register.watch import watch

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        try:
            api = open_api(target)
            try:
                if args.watch:
                    watch(api, target)
                else:
                    register_pass(api, target, stream=sys.stderr)
            finally:
                api.close()
        except RegisterError as exc:
            print(f"ferrotile: error: registration stopped: {exc}", file=sys.stderr, flush=True)

    threading.Thread(target=run, name="serve-directory-register", daemon=True).start()
