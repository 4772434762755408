"""The bare Granian ASGI relay: a bench reference target (the floor of Python per frame).

No framework and no checks: ``PUT /api/v1/array/full/{x}`` and every binary message of
``WS /api/v1/stream/push/{x}`` (acknowledged with ``{"frames": K, "sequence": N}``, K the
socket's messages so far, as ferrotile counts them) go as they are into one bounded asyncio
queue per ``WS /api/v1/stream/single/{x}`` subscriber, whose task sends each as one binary
message. ``GET /healthz`` and ``POST /api/v1/metadata/`` answer 200
so that the bench clients run unchanged. Served by Granian, ASGI, one worker::

    granian --interface asgi --workers 1 --port 8000 --working-dir bench granian_relay:app
"""

import asyncio
from collections import defaultdict
from typing import Any

BACKLOG = 256  # messages a subscriber may fall behind before new ones are dropped for it
topics: defaultdict[str, set[asyncio.Queue[bytes | None]]] = defaultdict(set)
sequences: defaultdict[str, int] = defaultdict(int)


def publish(key: str, body: bytes) -> int:
    for queue in topics[key]:
        if queue.qsize() < BACKLOG:  # a full queue drops: the subscriber sees the id gap
            queue.put_nowait(body)
    sequences[key] += 1
    return sequences[key]


async def respond(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        return await send({"type": "lifespan.shutdown.complete"})
    route, _, key = scope["path"].rpartition("/")
    if scope["type"] == "http":
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        if route == "/api/v1/array/full" and scope["method"] == "PUT":
            publish(key, chunks[0] if len(chunks) == 1 else b"".join(chunks))
            return await respond(send, 200, b"null")
        if scope["path"] in ("/healthz", "/api/v1/metadata/"):
            return await respond(send, 200, b"{}")
        return await respond(send, 404, b'{"detail": "not a relay route"}')
    if route not in ("/api/v1/stream/single", "/api/v1/stream/push"):
        return await send({"type": "websocket.close", "code": 1008})
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    if route.endswith("push"):
        frames = 0  # acknowledged on this socket so far, as ferrotile counts them
        while (message := await receive())["type"] == "websocket.receive":
            sequence = publish(key, message.get("bytes") or b"")
            frames += 1
            ack = f'{{"frames": {frames}, "sequence": {sequence}}}'
            await send({"type": "websocket.send", "text": ack})
        return None
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    topics[key].add(queue)

    async def until_closed() -> None:  # subscribers send nothing but their close
        await receive()
        queue.put_nowait(None)

    watcher = asyncio.ensure_future(until_closed())
    try:
        while (body := await queue.get()) is not None:
            await send({"type": "websocket.send", "bytes": body})
    finally:
        topics[key].discard(queue)
        watcher.cancel()
    return None
