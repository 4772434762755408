"""Server settings: a plain dataclass built by the CLI or SimpleServer, handed to workers as JSON.

Granian starts each worker in its own process; the settings travel to them in the
``FERROTILE_SETTINGS`` environment variable so that every worker builds the same app.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ferrotile.streaming.redis_url import is_redis_url

SETTINGS_ENV = "FERROTILE_SETTINGS"
#: ``prometheus_client``'s multiprocess directory, shared by the Granian workers of a process.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Tiled's streaming-cache defaults (``data_ttl`` one hour, ``seq_ttl`` thirty days).
DEFAULT_DATA_TTL = 3600.0
DEFAULT_SEQ_TTL = 30 * 24 * 3600.0
#: Per-node retention caps of the stream replay buffer (count and msgpack bytes).
DEFAULT_RETENTION_COUNT = 10_000
DEFAULT_RETENTION_BYTES = 256 * 1024 * 1024
#: One budget for retained stream bytes in a process, over all nodes (fits a small machine).
DEFAULT_CACHE_MAX_TOTAL_BYTES = 1024 * 1024 * 1024
#: Redis Streamer API: entries kept per stream (its ``REDIS_STREAM_MAXLEN``) and the biggest
#: WebSocket message or REST body a push may send.
DEFAULT_STREAMER_MAXLEN = 1000
DEFAULT_STREAMER_MESSAGE_BYTES = 64 * 1024 * 1024
#: Largest size ``PATCH ...?extend=true`` may grow an array to (1 TiB; zarr allocates lazily,
#: so the bound is on what the array may come to hold, not on memory).
DEFAULT_MAX_ARRAY_BYTES = 2**40
#: Largest request body of the routes the edge serves itself (array writes: 4 GiB).
DEFAULT_MAX_REQUEST_BYTES = 4 * 2**30
#: Seconds a client may take to send its request's headers, or between two pieces of a body.
DEFAULT_CLIENT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to build the application.

    Parameters
    ----------
    catalog_uri
        Catalog database, e.g. ``sqlite:////data/catalog.db``.
    api_key
        The single API key; compared in constant time.
    writable
        Directories where uploaded arrays are written (the first one is used).
    readable
        Directories whose files may be registered and read.
    public
        Anonymous clients may read (never write).
    cache
        ``"memory"`` streams in-process; ``"none"`` turns streaming off;
        ``redis://[[user]:password@]host[:port][/db]`` (or ``rediss://``, TLS) streams through
        Redis, which several workers share; ``redis+sentinel://host:port[,host:port...]/master``
        asks Sentinels for the master and follows a failover.
    cache_data_ttl, cache_seq_ttl
        Seconds a stream message is retained; idle seconds before a stream's sequence restarts.
    retention_count, retention_bytes
        Per-node cap on retained messages (count, and msgpack bytes; the newest is always kept).
    cache_max_total_bytes
        Most msgpack bytes retained in one process over all nodes (with Redis: in each
        process's copies); past it the oldest messages of any node are evicted first (the
        newest of each node stays), and subscribers that asked get gap notices.
    access_log
        Write a JSON line per request and WebSocket connection to stderr.
    streamer_device_prefixing
        Redis Streamer API: streams are named ``{device}:{prefix}{sid}`` (its default); False is
        its ``DISABLE_MULTI_DEVICE_PREFIXING=1`` (``{prefix}{sid}``, no devices).
    streamer_maxlen, streamer_max_bytes, streamer_max_age
        Redis Streamer API: per-stream retention (entries, bytes, seconds).
    streamer_max_message_bytes
        Redis Streamer API: largest push message (WebSocket frame or REST body).
    max_array_bytes
        Largest size, in bytes, that ``PATCH ...?extend=true`` may grow an array to (422 beyond).
    max_request_bytes
        Largest request body the edge accepts on the routes it serves (array writes; 413 before
        anything is read).
    client_timeout
        Seconds a client may take to send its request's headers, or between two pieces of its
        body (the connection is closed, or 408).
    table_storage
        SQL database for appendable tables (``sqlite:///FILE``, ``duckdb:///FILE`` or
        ``postgresql://...``);
        ``None`` means ``<first writable directory>/storage.sqlite`` (see :attr:`sql_storage`).
    """

    catalog_uri: str
    api_key: str
    writable: tuple[Path, ...] = ()
    readable: tuple[Path, ...] = ()
    public: bool = False
    cache: str = "memory"
    cache_data_ttl: float = DEFAULT_DATA_TTL
    cache_seq_ttl: float = DEFAULT_SEQ_TTL
    retention_count: int = DEFAULT_RETENTION_COUNT
    retention_bytes: int = DEFAULT_RETENTION_BYTES
    cache_max_total_bytes: int = DEFAULT_CACHE_MAX_TOTAL_BYTES
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    response_bytesize_limit: int = 500_000_000
    extra: dict[str, Any] = field(default_factory=dict)
    table_storage: str | None = None
    access_log: bool = False
    streamer_device_prefixing: bool = True
    streamer_maxlen: int = DEFAULT_STREAMER_MAXLEN
    streamer_max_bytes: int = DEFAULT_RETENTION_BYTES
    streamer_max_age: float = DEFAULT_DATA_TTL
    streamer_max_message_bytes: int = DEFAULT_STREAMER_MESSAGE_BYTES
    max_array_bytes: int = DEFAULT_MAX_ARRAY_BYTES
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    client_timeout: float = DEFAULT_CLIENT_TIMEOUT

    @property
    def sql_storage(self) -> str | None:
        """The SQL storage URI of appendable tables, or ``None`` when there is nowhere to put it."""
        if self.table_storage is not None:
            return self.table_storage
        if self.writable:
            return f"sqlite:///{self.writable[0] / 'storage.sqlite'}"
        return None

    @property
    def streaming(self) -> bool:
        return self.cache != "none"

    @property
    def redis(self) -> bool:
        """Streaming goes through Redis (``--cache redis://...``, or ``redis+sentinel://...``)."""
        return is_redis_url(self.cache)

    def to_json(self) -> bytes:
        data = dataclasses.asdict(self)
        data["writable"] = [str(p) for p in self.writable]
        data["readable"] = [str(p) for p in self.readable]
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Settings:
        data = orjson.loads(raw)
        data["writable"] = tuple(Path(p) for p in data.get("writable", ()))
        data["readable"] = tuple(Path(p) for p in data.get("readable", ()))
        return cls(**data)

    @classmethod
    def from_env(cls) -> Settings:
        raw = os.environ.get(SETTINGS_ENV)
        if not raw:
            raise RuntimeError(
                f"{SETTINGS_ENV} is not set; start workers through `ferrotile serve`"
            )
        return cls.from_json(raw)
