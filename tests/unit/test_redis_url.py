"""Redis cache URLs: parsing, redaction and the reachability probe."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ferrotile.streaming.redis_url import (
    RedisUrlError,
    SentinelLocation,
    is_redis_url,
    parse_redis_url,
    ping,
    redis_client,
)
from tests.conftest import free_port
from tests.redis import RedisServer, Sentinel


def test_parse_full_url() -> None:
    loc = parse_redis_url("rediss://alice:s%40cret@cache.example:6380/2")
    assert (loc.tls, loc.host, loc.port, loc.db) == (True, "cache.example", 6380, 2)
    assert (loc.username, loc.password) == ("alice", "s@cret")
    assert loc.redacted == "rediss://alice:***@cache.example:6380/2"


def test_defaults() -> None:
    loc = parse_redis_url("redis://localhost")
    assert (loc.tls, loc.port, loc.db, loc.password) == (False, 6379, 0, None)
    assert loc.redacted == "redis://localhost:6379/0"


def test_password_only() -> None:
    assert parse_redis_url("redis://:pw@h:1").redacted == "redis://:***@h:1/0"


@pytest.mark.parametrize(
    "url", ["redis://", "redis://h:notaport", "redis://h/db", "redis://h?x=1", "http://h"]
)
def test_invalid(url: str) -> None:
    with pytest.raises(RedisUrlError):
        parse_redis_url(url)


def test_sentinel_url() -> None:
    loc = parse_redis_url("redis+sentinel://bob:p%40ss@s1:26380,[::1],s3/main%201/4")
    assert loc == SentinelLocation(
        sentinels=(("s1", 26380), ("::1", 26379), ("s3", 26379)),
        master="main 1",
        db=4,
        username="bob",
        password="p@ss",
    )
    assert loc.redacted == "redis+sentinel://bob:***@s1:26380,[::1]:26379,s3:26379/main 1/4"
    assert parse_redis_url("REDIS+SENTINEL://s/m").redacted == "redis+sentinel://s:26379/m/0"


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://s:1",
        "redis+sentinel://s:1/",
        "redis+sentinel://s:1/m/x",
        "redis+sentinel://s:1/m/1/2",
        "redis+sentinel://s:port/m",
        "redis+sentinel://s:1,/m",
        "redis+sentinel://s:1/m?x=1",
    ],
)
def test_invalid_sentinel_url(url: str) -> None:
    with pytest.raises(RedisUrlError):
        parse_redis_url(url)


@pytest.fixture
def sentinel() -> Iterator[tuple[RedisServer, Sentinel]]:
    master = RedisServer()
    master.start()
    watcher = Sentinel(master_port=master.port)
    watcher.start()
    yield master, watcher
    watcher.close()
    master.close()


def test_ping_and_client_through_sentinels(sentinel: tuple[RedisServer, Sentinel]) -> None:
    master, watcher = sentinel
    down = free_port()
    url = f"redis+sentinel://127.0.0.1:{down},127.0.0.1:{watcher.port}/{watcher.name}/2"
    ping(parse_redis_url(url))  # the first Sentinel is down, the second names the master
    client = redis_client(url)
    client.set("k", "v")
    client.close()
    import redis

    direct = redis.Redis(port=master.port, db=2)
    assert direct.get("k") == b"v"  # the master the Sentinel names, in database 2
    direct.close()
    with pytest.raises(RedisUrlError, match="does not monitor a master named 'other'"):
        ping(parse_redis_url(f"redis+sentinel://127.0.0.1:{watcher.port}/other"))
    with pytest.raises(RedisUrlError, match="No Sentinel"):
        ping(parse_redis_url(f"redis+sentinel://127.0.0.1:{down}/{watcher.name}"))


def test_is_redis_url() -> None:
    assert is_redis_url("redis+sentinel://h/m")
    assert is_redis_url("REDIS://h") and is_redis_url("rediss://h")
    assert not is_redis_url("memory") and not is_redis_url("redis")


def test_ping(redis_url: str) -> None:
    ping(parse_redis_url(redis_url))
    with pytest.raises(RedisUrlError, match="refused SELECT"):
        ping(parse_redis_url(redis_url + "/99999"))
