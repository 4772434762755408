"""The ``ferrotile`` command line; its flags mirror ``tiled serve catalog``.

Errors are printed as one line (``ferrotile: error: ...``) with exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ferrotile import __version__
from ferrotile.catalog.uri import DUCKDB_EXTRA, duckdb_path, has_duckdb
from ferrotile.cluster import guard
from ferrotile.config import (
    DEFAULT_CACHE_MAX_TOTAL_BYTES,
    DEFAULT_CLIENT_TIMEOUT,
    DEFAULT_DATA_TTL,
    DEFAULT_MAX_ARRAY_BYTES,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_RETENTION_BYTES,
    DEFAULT_RETENTION_COUNT,
    DEFAULT_SEQ_TTL,
    DEFAULT_STREAMER_MAXLEN,
    DEFAULT_STREAMER_MESSAGE_BYTES,
    Settings,
)
from ferrotile.config_file import env_name, from_file, layered, options
from ferrotile.errors import FerrotileError
from ferrotile.register.cli import (
    add_directory_parser,
    add_register_parser,
    check_directory_args,
    run_register,
    start_background_registration,
)
from ferrotile.server import (
    ServeError,
    check_port,
    new_api_key,
    prepare_catalog,
    prepare_directories,
    run_workers,
)
from ferrotile.streaming.redis_url import is_redis_url, parse_redis_url, ping


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ferrotile",
        description="A fast data server that speaks Tiled's HTTP and WebSocket API.",
    )
    parser.add_argument("--version", action="version", version=f"ferrotile {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run a server")
    targets = serve.add_subparsers(dest="target", required=True, metavar="TARGET")
    catalog = targets.add_parser(
        "catalog",
        help="serve a catalog database (SQLite or PostgreSQL)",
        description=(
            "Serve a catalog. Arrays written by clients are stored as zarr under the first "
            "writable directory; every write is streamed to WebSocket subscribers. Every "
            "option can also be set by a FERROTILE_<OPTION> environment variable (e.g. "
            "FERROTILE_API_KEY), below the command line (see `serve config --help`)."
        ),
    )
    catalog.add_argument(
        "database",
        nargs="?",
        metavar="DB_URI",
        help=(
            "catalog database: a path like catalog.db, or a URI like sqlite:////abs/catalog.db "
            "or postgresql://user:password@host:port/database"
        ),
    )
    catalog.add_argument(
        "--temp",
        action="store_true",
        help="use a new catalog and data directory in a temporary directory",
    )
    catalog.add_argument(
        "--init",
        action="store_true",
        help="create the database (PostgreSQL: its tables) if missing, or migrate it",
    )
    catalog.add_argument(
        "-w",
        "--write",
        action="append",
        default=[],
        metavar="DIR|URI",
        help=(
            "writable data directory (repeatable), or the SQL storage of appendable tables: "
            "sqlite:///FILE or postgresql://USER@HOST:PORT/DB (default: "
            "<first writable directory>/storage.sqlite)"
        ),
    )
    catalog.add_argument(
        "-r",
        "--read",
        action="append",
        default=[],
        metavar="DIR",
        help="readable data directory (repeatable)",
    )
    catalog.add_argument(
        "--api-key", help="the API key clients must present (default: a random one, printed)"
    )
    catalog.add_argument(
        "--public", action="store_true", help="let anonymous clients read (not write)"
    )
    catalog.add_argument(
        "--cache",
        default="memory",
        metavar="URI",
        help=(
            "streaming: 'memory' (in-process, default), 'none', or a Redis URL "
            "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] (rediss:// for TLS), or "
            "redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER[/DB] "
            "(follows a Sentinel failover), shared by every worker and required for --workers > 1"
        ),
    )
    catalog.add_argument(
        "--cache-data-ttl",
        type=float,
        default=0,
        metavar="S",
        help=f"retain stream messages S seconds (default {DEFAULT_DATA_TTL:g})",
    )
    catalog.add_argument(
        "--cache-seq-ttl",
        type=float,
        default=0,
        metavar="S",
        help=f"idle time before a stream's sequence restarts (default {DEFAULT_SEQ_TTL:g})",
    )
    catalog.add_argument(
        "--cache-max-count",
        type=int,
        default=DEFAULT_RETENTION_COUNT,
        metavar="N",
        help=(
            "retain at most N messages per node for replay; older ones are dropped first "
            f"(default {DEFAULT_RETENTION_COUNT})"
        ),
    )
    catalog.add_argument(
        "--cache-max-bytes",
        type=int,
        default=DEFAULT_RETENTION_BYTES,
        metavar="B",
        help=(
            "retain at most B bytes of messages per node for replay; the newest message is "
            f"always kept (default {DEFAULT_RETENTION_BYTES})"
        ),
    )
    catalog.add_argument(
        "--cache-max-total-bytes",
        type=int,
        default=DEFAULT_CACHE_MAX_TOTAL_BYTES,
        metavar="B",
        help=(
            "retain at most B bytes of messages in this process over all nodes; past it the "
            "oldest messages of any node are dropped first, the newest of each node is kept "
            f"(default {DEFAULT_CACHE_MAX_TOTAL_BYTES}, 1 GiB)"
        ),
    )
    catalog.add_argument(
        "--max-array-bytes",
        type=int,
        default=DEFAULT_MAX_ARRAY_BYTES,
        metavar="B",
        help=(
            "largest size an array may grow to by PATCH ...?extend=true; larger extensions are "
            f"refused with 422 (default {DEFAULT_MAX_ARRAY_BYTES}, 1 TiB)"
        ),
    )
    catalog.add_argument(
        "--max-request-bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        metavar="B",
        help=(
            "largest request body of an array write; larger ones are refused with 413 before "
            f"they are read (default {DEFAULT_MAX_REQUEST_BYTES}, 4 GiB)"
        ),
    )
    catalog.add_argument(
        "--client-timeout",
        type=float,
        default=DEFAULT_CLIENT_TIMEOUT,
        metavar="S",
        help=(
            "seconds a client may take to send a request's headers, or between two pieces of "
            f"its body (default {DEFAULT_CLIENT_TIMEOUT:g})"
        ),
    )
    catalog.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    catalog.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    catalog.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (default 1); more than 1 needs --cache redis://...",
    )
    streamer = catalog.add_argument_group("Redis Streamer API (/data/{sid}, /graphql)")
    streamer.add_argument(
        "--streamer-no-device-prefixing",
        action="store_true",
        help="name streams {prefix}{sid}, not {device}:{prefix}{sid} "
        "(Redis Streamer's DISABLE_MULTI_DEVICE_PREFIXING=1)",
    )
    streamer.add_argument(
        "--streamer-maxlen",
        type=int,
        default=DEFAULT_STREAMER_MAXLEN,
        metavar="N",
        help=f"entries kept per stream (REDIS_STREAM_MAXLEN; default {DEFAULT_STREAMER_MAXLEN})",
    )
    streamer.add_argument(
        "--streamer-max-bytes",
        type=int,
        default=DEFAULT_RETENTION_BYTES,
        metavar="B",
        help=f"bytes kept per stream (default {DEFAULT_RETENTION_BYTES})",
    )
    streamer.add_argument(
        "--streamer-max-age",
        type=float,
        default=DEFAULT_DATA_TTL,
        metavar="S",
        help=f"seconds an entry is kept (default {DEFAULT_DATA_TTL:.0f})",
    )
    streamer.add_argument(
        "--streamer-max-message-bytes",
        type=int,
        default=DEFAULT_STREAMER_MESSAGE_BYTES,
        metavar="B",
        help=f"largest push message (default {DEFAULT_STREAMER_MESSAGE_BYTES})",
    )
    catalog.add_argument(
        "--access-log",
        action="store_true",
        help="write one JSON line per request and WebSocket connection to stderr",
    )
    _add_config_parser(targets, catalog)
    add_directory_parser(targets)
    add_register_parser(commands)
    return parser


def _add_config_parser(
    targets: argparse._SubParsersAction[argparse.ArgumentParser],
    catalog: argparse.ArgumentParser,
) -> None:
    keys = "\n".join(f"  {key:<16} {env_name(key)}" for key in options(catalog))
    config = targets.add_parser(
        "config",
        help="serve a catalog configured by a YAML file (and FERROTILE_* variables)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Serve a catalog as `serve catalog` does, with its options read from a YAML file "
            "(keys below), from FERROTILE_* environment variables (FERROTILE_<KEY>_FILE: read "
            "the value from that file) and from options after FILE. Precedence: command-line "
            "option > environment > file > default. Repeatable options are YAML lists, or "
            "comma-separated in the environment.\n\nkey              environment variable\n" + keys
        ),
    )
    config.add_argument("file", metavar="FILE", help="YAML file of option keys and values")
    config.add_argument(
        "options", nargs=argparse.REMAINDER, metavar="...", help="`serve catalog` options"
    )


def _subparser(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = commands.choices[name]
    return parser


def _catalog_uri(database: str) -> str:
    if "://" in database:
        return database
    return f"sqlite:///{Path(database).expanduser().resolve()}"


def _table_storage(uris: list[str]) -> str | None:
    """The SQL storage among ``-w`` values (``None``: the default next to the data)."""
    if len(uris) > 1:
        raise ServeError(f"Give at most one SQL table storage with -w, not {uris}")
    if not uris:
        return None
    uri = uris[0]
    if uri.startswith("sqlite:///"):
        # Absolute, so that every worker (and a later restart) finds the same file.
        return f"sqlite:///{Path(uri[len('sqlite:///') :]).expanduser().resolve()}"
    if uri.startswith(("postgresql://", "postgres://")):
        return uri
    if uri.startswith("duckdb://"):
        try:
            path = duckdb_path(uri)
        except ValueError as exc:
            raise ServeError(f"-w {uri}: {exc}") from None
        if not has_duckdb():
            raise ServeError(f"-w {uri}: {DUCKDB_EXTRA}")
        return f"duckdb:///{path.expanduser().resolve()}"
    raise ServeError(
        f"-w {uri}: writable storage is a directory, sqlite:///FILE, duckdb:///FILE "
        "or postgresql://..."
    )


def _settings(args: argparse.Namespace) -> tuple[Settings, bool]:
    init = args.init
    writable = [Path(w).expanduser().resolve() for w in args.write if "://" not in w]
    table_storage = _table_storage([w for w in args.write if "://" in w])
    if args.temp:
        if args.database:
            raise ServeError("Give either a database or --temp, not both")
        directory = Path(tempfile.mkdtemp(prefix="ferrotile-"))
        atexit.register(shutil.rmtree, directory, True)
        database = str(directory / "catalog.db")
        writable.insert(0, directory / "data")
        if table_storage is None:
            table_storage = f"sqlite:///{directory / 'storage.sqlite'}"
        init = True
    elif args.database:
        database = args.database
    else:
        raise ServeError(
            "Give a catalog database (e.g. `ferrotile serve catalog --init catalog.db`) or --temp"
        )
    redis = is_redis_url(args.cache)
    if redis:
        parse_redis_url(args.cache)  # RedisUrlError: one line, password hidden
    elif args.cache not in ("memory", "none"):
        raise ServeError(
            f"--cache {args.cache.split('@')[-1]}: use 'memory', 'none', or a Redis URL "
            "(redis://HOST:PORT[/DB], rediss:// for TLS, redis+sentinel://HOST:PORT/MASTER)"
        )
    if args.workers < 1:
        raise ServeError("--workers must be at least 1")
    if args.workers > 1 and (table_storage or "").startswith("duckdb:"):
        raise ServeError(
            f"--workers {args.workers}: a DuckDB table storage serves one process (DuckDB locks "
            "its file); use --workers 1, or PostgreSQL (-w postgresql://...) to scale out"
        )
    if args.workers > 1 and not redis:
        raise ServeError(
            f"--workers {args.workers} needs a streaming cache that every worker shares: "
            "add --cache redis://HOST:PORT (or use --workers 1)"
        )
    if args.cache_max_count < 1:
        raise ServeError("--cache-max-count must be at least 1")
    if args.cache_max_bytes < 1:
        raise ServeError("--cache-max-bytes must be at least 1")
    if args.cache_max_total_bytes < 1:
        raise ServeError("--cache-max-total-bytes must be at least 1")
    for flag, value in (
        ("--streamer-maxlen", args.streamer_maxlen),
        ("--streamer-max-bytes", args.streamer_max_bytes),
        ("--streamer-max-age", args.streamer_max_age),
        ("--streamer-max-message-bytes", args.streamer_max_message_bytes),
        ("--max-array-bytes", args.max_array_bytes),
        ("--max-request-bytes", args.max_request_bytes),
        ("--client-timeout", args.client_timeout),
    ):
        if value <= 0:
            raise ServeError(f"{flag} must be positive")
    if not 0 < args.port < 65536:
        raise ServeError(f"--port {args.port} is not a valid port")
    settings = Settings(
        catalog_uri=_catalog_uri(database),
        api_key=args.api_key or new_api_key(),
        writable=tuple(writable),
        table_storage=table_storage,
        readable=tuple(Path(r).expanduser().resolve() for r in args.read),
        public=args.public,
        cache=args.cache,
        cache_data_ttl=args.cache_data_ttl or DEFAULT_DATA_TTL,
        cache_seq_ttl=args.cache_seq_ttl or DEFAULT_SEQ_TTL,
        retention_count=args.cache_max_count,
        retention_bytes=args.cache_max_bytes,
        cache_max_total_bytes=args.cache_max_total_bytes,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
        streamer_device_prefixing=not args.streamer_no_device_prefixing,
        streamer_maxlen=args.streamer_maxlen,
        streamer_max_bytes=args.streamer_max_bytes,
        streamer_max_age=args.streamer_max_age,
        streamer_max_message_bytes=args.streamer_max_message_bytes,
        max_array_bytes=args.max_array_bytes,
        max_request_bytes=args.max_request_bytes,
        client_timeout=args.client_timeout,
    )
    return settings, init


def _serve_catalog(
    args: argparse.Namespace, before_run: Callable[[Settings], None] | None = None
) -> None:
    settings, init = _settings(args)
    prepare_directories(settings)
    prepare_catalog(settings, init=init)
    check_port(settings.host, settings.port)
    if settings.redis:
        # Once, here, before any worker starts: one clear line instead of N worker tracebacks.
        ping(parse_redis_url(settings.cache))
    guard(settings)  # several processes: refuse what would not behave as one server
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(
        "\n    Use the following URL to connect to ferrotile:\n\n"
        f'    "http://{host}:{settings.port}/api/v1?api_key={settings.api_key}"\n',
        flush=True,
    )
    if before_run is not None:
        before_run(settings)
    run_workers(settings)


def _serve_directory(args: argparse.Namespace) -> None:
    # `serve catalog --temp -r DIR`, plus the same registration client as `ferrotile register`
    # run from a thread against it: the server answers at once and nodes appear as walked.
    check_directory_args(args)
    catalog = _parser().parse_args(["serve", "catalog", "--temp", f"--read={args.directory}"])
    catalog.api_key, catalog.public = args.api_key, args.public
    catalog.host, catalog.port = args.host, args.port
    _serve_catalog(catalog, lambda settings: start_background_registration(args, settings))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve" and args.target in ("catalog", "config"):
            catalog = _subparser(parser, "serve", "catalog")
            if args.target == "catalog":
                rest, file_values = argv[argv.index("catalog") + 1 :], {}
            else:
                rest, file_values = args.options, from_file(Path(args.file), options(catalog))
            _serve_catalog(layered(catalog, rest, file_values=file_values))
        elif args.command == "serve" and args.target == "directory":
            _serve_directory(args)
        elif args.command == "register":
            run_register(args)
    except FerrotileError as exc:
        print(f"ferrotile: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
