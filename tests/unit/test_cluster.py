"""Startup refusals for several processes: ``ferrotile serve`` exits with one line when its
catalog or storage cannot be the same as the processes already serving (catalog lock, Redis
membership), or when Redis or PostgreSQL cannot be reached."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferrotile.cluster import Member
from tests.conftest import free_port
from tests.integration.haproxy_cluster import Node, wait_healthy, write_config
from tests.unit.test_cli import assert_one_line_error, run


def member(**changes: Any) -> Member:
    base = Member(
        id="a", host="h1", pid=1, port=8000, catalog="postgresql://u@db/catalog",
        backend="postgresql", data="/data", tables="postgresql://db/tables",
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def test_member_conflicts() -> None:
    me = member()
    assert me.conflict(member(id="b", host="h2", port=8001)) is None  # PostgreSQL: any host
    assert "serves catalog" in (me.conflict(member(catalog="postgresql://u@db/other")) or "")
    assert "writes data under" in (me.conflict(member(data="/elsewhere")) or "")
    assert "appendable tables" in (me.conflict(member(tables="postgresql://db/t2")) or "")
    sqlite = member(catalog="/c.db", backend="sqlite", tables="sqlite:////data/s.sqlite")
    assert sqlite.conflict(dataclasses.replace(sqlite, id="b")) is None  # same host
    other_host = dataclasses.replace(sqlite, id="b", host="h2")
    assert "cannot be shared between hosts" in (sqlite.conflict(other_host) or "")


@pytest.fixture
def running(tmp_path: Path, redis_url: str) -> Iterator[tuple[Node, str]]:
    """A process on a SQLite catalog, streaming through Redis database 7."""
    url = f"{redis_url}/7"
    catalog = tmp_path / "catalog.db"
    node = Node("p1", tmp_path / "p1.yml", free_port(), tmp_path / "p1.log")
    write_config(
        node.config, database=str(catalog), init=True, write=[str(tmp_path / "data")],
        cache=url, api_key="secret", port=node.port,
    )  # fmt: skip
    node.start()
    yield node, url
    node.stop()


def test_second_process_on_the_in_process_hub_is_refused(running: tuple[Node, str]) -> None:
    node, _ = running
    values = yaml.safe_load(node.config.read_text())
    other = write_config(node.config.with_name("memory.yml"), **{**values, "cache": "memory"})
    result = run("serve", "config", str(other), "--port", str(free_port()))
    assert_one_line_error(result, "need a shared streaming cache")


def test_process_with_another_catalog_on_the_same_redis_is_refused(
    running: tuple[Node, str], tmp_path: Path
) -> None:
    _, url = running
    result = run(
        "serve", "catalog", "--init", str(tmp_path / "other.db"), "-w", str(tmp_path / "data"),
        "--cache", url, "--port", str(free_port()), "--api-key", "k",
    )  # fmt: skip
    assert_one_line_error(result, "processes sharing Redis must share the catalog")


def test_second_process_sharing_everything_starts(running: tuple[Node, str]) -> None:
    node, _ = running
    second = Node("p2", node.config.with_name("p2.yml"), free_port(), node.log.with_name("p2.log"))
    second.config.write_text(node.config.read_text())
    env_port = {"FERROTILE_PORT": str(second.port)}  # the environment overrides the file
    process = subprocess.Popen(
        [sys.executable, "-m", "ferrotile", "serve", "config", str(second.config)],
        stdout=second.log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **env_port},
    )
    second.process = process
    try:
        wait_healthy(f"{second.url}/healthz", process, second.log)
    finally:
        second.stop()


def test_unreachable_redis(tmp_path: Path) -> None:
    result = run("serve", "catalog", "--temp", "--cache", f"redis://127.0.0.1:{free_port()}")
    assert_one_line_error(result, "unreachable")


def test_unreachable_postgresql() -> None:
    uri = f"postgresql://postgres@127.0.0.1:{free_port()}/catalog"
    assert_one_line_error(run("serve", "catalog", uri, "--init"), "Cannot connect")
