"""Redis cache URLs: parsing, redaction and the reachability probe."""

from __future__ import annotations

import pytest

from ferrotile.streaming.redis_url import RedisUrlError, is_redis_url, parse_redis_url, ping


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


def test_is_redis_url() -> None:
    assert is_redis_url("REDIS://h") and is_redis_url("rediss://h")
    assert not is_redis_url("memory") and not is_redis_url("redis")


def test_ping(redis_url: str) -> None:
    ping(parse_redis_url(redis_url))
    with pytest.raises(RedisUrlError, match="refused SELECT"):
        ping(parse_redis_url(redis_url + "/99999"))
