"""The Redis Streamer API (``/data/{sid}``: WebSocket push and pull, REST GET and POST) on the
same hub as Tiled's streams. See docs/api.md and :mod:`ferrotile.streamer`."""
