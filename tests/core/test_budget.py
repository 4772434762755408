"""The process-wide memory budget (``Hub(max_total_bytes=...)``, ``--cache-max-total-bytes``)
over many nodes, in process and for the Redis mirrors: the total retained stays bounded and
subscribers behind an evicted message are told."""

from __future__ import annotations

import asyncio

from tests.core.helpers import H, MakeHubs, drain, run

BUDGET = 256 * 1024
NODES = 32
ROUNDS = 20


@run
async def test_the_total_stays_within_the_budget_and_gap_notices_arrive(
    hubs: MakeHubs, backend: str
) -> None:
    a, b = await hubs(max_total_bytes=BUDGET)
    frame = bytes(4096)
    topics = range(1, NODES + 1)
    # Subscribers that never read until the end: the budget evicts what they have not read.
    skipping = [await b.subscribe(t, notify_gaps=True, on_overflow="latest") for t in topics]
    closing = await b.subscribe(1)
    peak = 0
    for _ in range(ROUNDS):
        for topic in topics:
            await a.publish(topic, H, frame)
        peak = max(peak, b.stats()["retained_bytes"])
    if backend == "redis":  # wait until b's reader has mirrored every publish
        async with asyncio.timeout(10):
            while b.stats()["received"] < NODES * ROUNDS:
                await asyncio.sleep(0.01)
    stats = b.stats()
    assert stats["max_total_bytes"] == BUDGET
    assert max(peak, stats["retained_bytes"]) <= BUDGET
    # 640 frames of ~4 KiB went through: most of them were evicted, oldest first.
    assert stats["evicted_messages"] >= NODES * ROUNDS - BUDGET // len(frame)
    assert stats["evicted_bytes"] >= stats["evicted_messages"] * len(frame)
    for sub in skipping:
        notice, newest = await drain(sub, 2)
        assert (notice["type"], notice["reason"], notice["missed_from"]) == (
            "stream-gap",
            "evicted",
            1,
        )
        assert newest["sequence"] == ROUNDS
    frames, close = await asyncio.wait_for(closing.next_batch(), 5)
    assert frames == [] and close is not None
    assert close[0] == 1008 and "no longer retained" in close[1]
