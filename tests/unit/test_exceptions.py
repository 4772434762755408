"""Every exception the server's modules define is a :class:`ferrotile.errors.FerrotileError`
(the client's are :class:`ferrotile.client.ClientError`: the client imports without the
server), so that one ``except`` catches them and the CLI prints them without a traceback."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import ferrotile
from ferrotile.client import ClientError
from ferrotile.errors import FerrotileError


def defined_exceptions(prefix: str, skip: tuple[str, ...] = ()) -> list[type[BaseException]]:
    found = []
    for module_info in pkgutil.walk_packages(ferrotile.__path__, "ferrotile."):
        name = module_info.name
        if not name.startswith(prefix) or name.endswith("__main__") or name.startswith(skip):
            continue
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == name and issubclass(cls, BaseException):
                found.append(cls)
    return found


def test_server_exceptions_are_ferrotile_errors() -> None:
    exceptions = defined_exceptions("ferrotile.", skip=("ferrotile.client",))
    assert len(exceptions) > 15  # the walk found the package's modules
    outside = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in exceptions
        if not issubclass(cls, FerrotileError) and not cls.__name__.startswith("_")
    ]
    assert outside == []


def test_client_errors_raised_to_users_are_client_errors() -> None:
    public = [getattr(ferrotile.client, name) for name in ferrotile.client.__all__]
    errors = [obj for obj in public if inspect.isclass(obj) and issubclass(obj, BaseException)]
    assert len(errors) >= 5
    assert [cls for cls in errors if not issubclass(cls, ClientError)] == []
