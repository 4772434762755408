"""Redis Streamer's GraphQL API at ``/graphql`` (strawberry): devices, stream listing and
metadata, the mutations and the low-rate base64 ``streams`` subscription.

Modules: :mod:`.context` (auth and per-request context), :mod:`.listing` (streams found in the
catalog's ``streams`` subtree), :mod:`.devices` (device state in device containers' metadata and
the device events), :mod:`.types` (``Stream``, ``Device``, ``DataPayload(s)``), :mod:`.queries`,
:mod:`.mutations`, :mod:`.subscription`, :mod:`.schema` and :mod:`.app` (the ASGI app).
"""
