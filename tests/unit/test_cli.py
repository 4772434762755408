"""CLI errors are one clear line and exit status 1, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port
from tests.postgres import PostgresServer


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferrotile", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ferrotile: error: ")
    assert needle in lines[0], lines[0]


def test_missing_database_without_init(tmp_path: Path) -> None:
    result = run("serve", "catalog", str(tmp_path / "missing.db"))
    assert_one_line_error(result, "--init")


def test_bad_database_uri() -> None:
    assert_one_line_error(run("serve", "catalog", "mysql://x/y", "--init"), "mysql")


def test_unreachable_postgresql_catalog_hides_the_password() -> None:
    port = free_port()  # nothing listens there
    uri = f"postgresql+asyncpg://tiled:hunter2pw@127.0.0.1:{port}/catalog"
    result = run("serve", "catalog", uri, "--init")
    assert_one_line_error(result, f"postgresql://tiled@127.0.0.1:{port}/catalog")
    assert "hunter2pw" not in result.stderr + result.stdout


def test_postgresql_catalog_without_schema_needs_init(postgres: PostgresServer) -> None:
    result = run("serve", "catalog", postgres.new_database())
    assert_one_line_error(result, "has no ferrotile catalog schema. Use --init")


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run("serve", "catalog", "--temp", "--port", str(port))
    assert_one_line_error(result, f"Port {port}")


def test_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run("serve", "catalog", "--temp", "-w", str(blocker / "data"))
    assert_one_line_error(result, "not writable")


def test_workers_need_a_shared_cache() -> None:
    assert_one_line_error(run("serve", "catalog", "--temp", "--workers", "2"), "--workers")


def test_no_database_and_no_temp() -> None:
    assert_one_line_error(run("serve", "catalog"), "--temp")


def test_help_documents_every_flag() -> None:
    result = run("serve", "catalog", "--help")
    assert result.returncode == 0
    flags = "--temp --init --write --read --api-key --public --cache --cache-data-ttl"
    more = ["--cache-seq-ttl", "--cache-max-total-bytes", "--host", "--port", "--workers"]
    for flag in [*flags.split(), *more]:
        assert flag in result.stdout


def test_workers_without_redis_name_the_fix() -> None:
    result = run("serve", "catalog", "--temp", "--workers", "2", "--cache", "memory")
    assert_one_line_error(result, "--cache redis://")


def test_unreachable_redis_is_one_line_without_the_password() -> None:
    port = free_port()  # nothing listens there
    url = f"redis://user:hunter2pw@127.0.0.1:{port}/3"
    result = run("serve", "catalog", "--temp", "--cache", url, "--workers", "2")
    assert_one_line_error(result, f"redis://user:***@127.0.0.1:{port}/3 is unreachable")
    assert "hunter2pw" not in result.stderr + result.stdout


def test_bad_redis_url_hides_the_password() -> None:
    result = run("serve", "catalog", "--temp", "--cache", "redis://u:hunter2pw@host:6379/x")
    assert_one_line_error(result, "database number")
    assert "hunter2pw" not in result.stderr + result.stdout


def test_unreachable_sentinels_are_one_line() -> None:
    port = free_port()
    url = f"redis+sentinel://u:hunter2pw@127.0.0.1:{port}/main"
    result = run("serve", "catalog", "--temp", "--cache", url, "--workers", "2")
    assert_one_line_error(result, f"No Sentinel of redis+sentinel://u:***@127.0.0.1:{port}/main/0")
    assert "hunter2pw" not in result.stderr + result.stdout


def test_unknown_cache_scheme() -> None:
    assert_one_line_error(
        run("serve", "catalog", "--temp", "--cache", "memcached://x"), "Redis URL"
    )


def test_wrong_redis_password_is_reported(redis_url: str) -> None:
    # The private Redis has no password: AUTH is refused, which is reported (not the password).
    url = redis_url.replace("redis://", "redis://:hunter2pw@")
    result = run("serve", "catalog", "--temp", "--cache", url)
    assert_one_line_error(result, "refused AUTH")
    assert "hunter2pw" not in result.stderr + result.stdout


def test_retention_caps_must_be_positive() -> None:
    assert_one_line_error(
        run("serve", "catalog", "--temp", "--cache-max-count", "0"), "--cache-max-count"
    )
    assert_one_line_error(
        run("serve", "catalog", "--temp", "--cache-max-total-bytes", "0"),
        "--cache-max-total-bytes",
    )
