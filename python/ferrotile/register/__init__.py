"""Register files in a ferrotile (or Tiled) server: ``ferrotile register`` and ``serve directory``.

:mod:`~ferrotile.register.walk` turns a directory tree into folders and items (numbered image
series grouped), :mod:`~ferrotile.register.sync` makes the server's tree match it over HTTP
(idempotent: unchanged items are skipped by fingerprint), :mod:`~ferrotile.register.watch` keeps
it in sync as files change.
"""
