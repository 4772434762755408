"""The Redis Streamer API's control plane: parameters, stream naming and the catalog nodes
that back its streams. The routes are in :mod:`ferrotile.api.streamer`; entries travel through
the same Rust hub as Tiled's stream messages."""
