"""Layered options for ``ferrotile serve``: command line > ``FERROTILE_*`` environment > YAML
file > built-in default.

Nothing here lists the options: every option of the ``serve catalog`` parser (its argparse
actions) is also a config-file key (the option's ``dest``: ``api_key``, ``cache_max_count``,
``write``, ...; ``-`` and ``_`` are interchangeable) and an environment variable
(``FERROTILE_`` + the key in capitals: ``FERROTILE_API_KEY``). A flag added to the parser gets
both at once. ``FERROTILE_<KEY>_FILE`` names a file holding the value (container secrets, e.g.
``FERROTILE_API_KEY_FILE=/run/secrets/ferrotile_api_key``).

Values from the environment are text: numbers are converted by the option's type, switches
accept ``1/true/yes/on`` and ``0/false/no/off``, repeatable options (``write``, ``read``) are
comma-separated. In the YAML file they have their natural types (a list for repeatable options).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ferrotile.errors import FerrotileError

ENV_PREFIX = "FERROTILE_"
#: Environment variables ferrotile uses for something else (never option values).
RESERVED_ENV = frozenset({"FERROTILE_SETTINGS", "FERROTILE_TEST_HOOKS"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigError(FerrotileError):
    """A config file, environment variable or option value is malformed or unknown."""


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's options by key (its ``dest``), without ``--help``."""
    return {
        action.dest: action
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
    }


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def given_on_command_line(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, Any]:
    """Parse ``argv`` with ``parser`` and keep only the options it actually contains.

    Parsed again with every default suppressed, so that an option left at its default is
    absent (and a lower layer may set it), while one given explicitly wins even if it repeats
    the default.
    """
    saved = {action: action.default for action in parser._actions}
    try:
        for action in parser._actions:
            action.default = argparse.SUPPRESS
        return vars(parser.parse_args(argv))
    finally:
        for action, default in saved.items():
            action.default = default


def _convert(action: argparse.Action, key: str, value: Any, origin: str) -> Any:
    """One value for ``action`` from a file (typed) or the environment (text)."""
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{origin}: {key} must be true or false, not {value!r}")
    if isinstance(action, argparse._AppendAction):
        if isinstance(value, str):
            items: list[Any] = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, list):
            items = value
        else:
            items = [value]
        return [_scalar(action, key, item, origin) for item in items]
    return _scalar(action, key, value, origin)


def _scalar(action: argparse.Action, key: str, value: Any, origin: str) -> Any:
    if isinstance(value, dict | list) or value is None:
        raise ConfigError(f"{origin}: {key} must be a single value, not {value!r}")
    if isinstance(value, bool) and action.type in (int, float):
        raise ConfigError(f"{origin}: {key} must be a number, not {value!r}")
    convert = action.type if callable(action.type) else str
    try:
        converted = convert(value if action.type in (int, float) else str(value))
    except (TypeError, ValueError):
        kind = getattr(convert, "__name__", "value")
        raise ConfigError(f"{origin}: {key} must be of type {kind}, not {value!r}") from None
    if action.choices is not None and converted not in action.choices:
        raise ConfigError(f"{origin}: {key} must be one of {list(action.choices)}")
    return converted


def from_file(path: Path, actions: Mapping[str, argparse.Action]) -> dict[str, Any]:
    """Read a YAML mapping of option keys to values.

    Raises
    ------
    ConfigError
        The file is unreadable, not YAML, not a mapping, or has an unknown key (named, with
        the known ones).
    """
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"Config file {path} is not valid YAML{where}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"Config file {path} must be a mapping of option names to values")
    values: dict[str, Any] = {}
    for raw_key, value in loaded.items():
        key = str(raw_key).replace("-", "_")
        action = actions.get(key)
        if action is None:
            known = ", ".join(sorted(actions))
            raise ConfigError(f"{path}: unknown key {raw_key!r} (known keys: {known})")
        values[key] = _convert(action, key, value, str(path))
    return values


def from_env(
    actions: Mapping[str, argparse.Action], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The options set by ``FERROTILE_<KEY>`` (or ``FERROTILE_<KEY>_FILE``) variables."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for key, action in actions.items():
        name = env_name(key)
        if name in RESERVED_ENV:
            continue
        if name in environ:
            values[key] = _convert(action, key, environ[name], f"environment {name}")
        elif f"{name}_FILE" in environ:
            secret = Path(environ[f"{name}_FILE"])
            try:
                text = secret.read_text().rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(f"{name}_FILE: cannot read {secret}: {exc.strerror}") from None
            values[key] = _convert(action, key, text, f"{name}_FILE")
    return values


def layered(
    parser: argparse.ArgumentParser,
    argv: list[str],
    *,
    file_values: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> argparse.Namespace:
    """The namespace ``parser`` would give, with each option from the highest layer setting it:
    command line (``argv``), then environment, then file, then the parser's default."""
    actions = options(parser)
    merged: dict[str, Any] = {key: action.default for key, action in actions.items()}
    merged.update(file_values or {})
    merged.update(from_env(actions, environ))
    merged.update(given_on_command_line(parser, argv))
    return argparse.Namespace(**merged)
