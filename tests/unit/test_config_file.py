"""``ferrotile serve config``: keys and FERROTILE_* variables derived from the CLI options, and
their precedence (command line > environment > file > default)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ferrotile.cli import _parser, _subparser
from ferrotile.config_file import ConfigError, env_name, from_env, from_file, layered, options


@pytest.fixture
def catalog() -> argparse.ArgumentParser:
    return _subparser(_parser(), "serve", "catalog")


def test_every_option_has_a_key_and_a_variable(catalog: argparse.ArgumentParser) -> None:
    keys = options(catalog)
    for key in ("database", "api_key", "cache", "cache_max_count", "write", "port", "workers"):
        assert key in keys
    assert "help" not in keys
    assert env_name("cache_max_count") == "FERROTILE_CACHE_MAX_COUNT"


def test_memory_budget_from_file_environment_and_command_line(
    catalog: argparse.ArgumentParser, tmp_path: Path
) -> None:
    config = tmp_path / "c.yml"
    config.write_text("cache_max_total_bytes: 1000\n")
    file_values = from_file(config, options(catalog))
    assert layered(catalog, [], file_values=file_values).cache_max_total_bytes == 1000
    env = {"FERROTILE_CACHE_MAX_TOTAL_BYTES": "2000"}
    assert layered(catalog, [], file_values=file_values, environ=env).cache_max_total_bytes == 2000
    argv = ["--cache-max-total-bytes", "3000"]
    args = layered(catalog, argv, file_values=file_values, environ=env)
    assert args.cache_max_total_bytes == 3000
    assert layered(catalog, []).cache_max_total_bytes == 1024**3  # 1 GiB by default


def test_precedence(catalog: argparse.ArgumentParser, tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("port: 1001\nworkers: 3\ncache-max-count: 7\napi_key: file\n")
    file_values = from_file(config, options(catalog))
    env = {"FERROTILE_PORT": "1002", "FERROTILE_WORKERS": "4"}
    args = layered(catalog, ["--port", "1003"], file_values=file_values, environ=env)
    assert args.port == 1003  # command line
    assert args.workers == 4  # environment
    assert args.cache_max_count == 7  # file
    assert args.api_key == "file"
    assert args.host == "127.0.0.1" and args.cache == "memory"  # defaults
    # An option given on the command line wins even when it repeats the default.
    assert layered(catalog, ["--port", "8000"], environ={"FERROTILE_PORT": "9"}).port == 8000


def test_types_lists_switches_and_secret_files(
    catalog: argparse.ArgumentParser, tmp_path: Path
) -> None:
    secret = tmp_path / "key"
    secret.write_text("s3cret\n")
    env = {
        "FERROTILE_WRITE": "/data, postgresql://db/tables",
        "FERROTILE_PUBLIC": "yes",
        "FERROTILE_CACHE_DATA_TTL": "2.5",
        "FERROTILE_API_KEY_FILE": str(secret),
        "FERROTILE_SETTINGS": "{}",  # reserved: never an option
    }
    values = from_env(options(catalog), env)
    assert values == {
        "write": ["/data", "postgresql://db/tables"],
        "public": True,
        "cache_data_ttl": 2.5,
        "api_key": "s3cret",
    }
    config = tmp_path / "c.yml"
    config.write_text("write: /one\nread: [/a, /b]\ntemp: true\n")
    assert from_file(config, options(catalog)) == {
        "write": ["/one"],
        "read": ["/a", "/b"],
        "temp": True,
    }


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("bogus: 1\n", "unknown key 'bogus'"),
        ("port: [1, 2]\n", "port must be a single value"),
        ("port: eighty\n", "port must be of type int"),
        ("public: maybe\n", "public must be true or false"),
        ("- a\n- b\n", "must be a mapping"),
        ("port: [\n", "not valid YAML (line"),
    ],
)
def test_bad_files(
    catalog: argparse.ArgumentParser, tmp_path: Path, text: str, needle: str
) -> None:
    config = tmp_path / "c.yml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=None) as error:
        from_file(config, options(catalog))
    assert needle in str(error.value)


def test_bad_environment(catalog: argparse.ArgumentParser, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FERROTILE_WORKERS: workers must be of type int"):
        from_env(options(catalog), {"FERROTILE_WORKERS": "many"})
    with pytest.raises(ConfigError, match="FERROTILE_API_KEY_FILE: cannot read"):
        from_env(options(catalog), {"FERROTILE_API_KEY_FILE": str(tmp_path / "missing")})
