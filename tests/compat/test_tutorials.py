"""The seed streaming tutorials, run verbatim with the stock tiled client against ferrotile."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.compat.conftest import Collector


def test_root_child_created_then_new_data_replay_and_close(client: Any, key: str) -> None:
    created = Collector()
    sub = client.subscribe()
    sub.child_created.add_callback(created)
    sub.start_in_thread()
    try:
        x = client.write_array(np.array([1, 2, 3]), key=key)
        update = created.wait_for(lambda u: u.key == key)
        child = update.child()
        assert child.shape == (3,)
        assert update.uri == child.item["links"]["self"]
        assert update.access_tags == []
        np.testing.assert_array_equal(child.read(), [1, 2, 3])
    finally:
        sub.disconnect()

    new_data, closed = Collector(), Collector()
    x_sub = client[key].subscribe()
    x_sub.new_data.add_callback(new_data)
    x_sub.stream_closed.add_callback(closed)
    x.patch(np.array([4, 5, 6]), offset=3, extend=True)
    x_sub.start_in_thread(0)
    try:
        first, second = new_data.take(2)
        assert first.sequence == 1
        np.testing.assert_array_equal(first.data(), [1, 2, 3])
        assert second.sequence == 2
        assert second.offset == (3,)
        np.testing.assert_array_equal(second.data(), [4, 5, 6])
        np.testing.assert_array_equal(client[key].read(), [1, 2, 3, 4, 5, 6])
        assert client[key].shape == (6,)
        x.close_stream()
        assert closed.get() is x_sub
    finally:
        x_sub.disconnect()


def test_live_updates_without_start_only_see_later_writes(client: Any, key: str) -> None:
    x = client.write_array(np.arange(10), key=key)
    updates = Collector()
    sub = x.subscribe()
    sub.new_data.add_callback(updates)
    sub.start_in_thread()
    try:
        for i in range(1, 4):
            x.write(np.arange(10) + i)
        got = updates.take(3)
        assert [u.sequence for u in got] == [2, 3, 4]
        for i, update in enumerate(got, start=1):
            assert update.shape == (10,)
            np.testing.assert_array_equal(update.data(), np.arange(10) + i)
    finally:
        sub.disconnect()


def test_start_n_replays_then_goes_live(client: Any, key: str) -> None:
    x = client.write_array(np.arange(10), key=key)
    for i in range(1, 4):
        x.write(np.arange(10) + i)  # sequences 2..4
    updates = Collector()
    sub = x.subscribe()
    sub.new_data.add_callback(updates)
    sub.start_in_thread(3)
    try:
        x.write(np.arange(10) + 4)
        x.write(np.arange(10) + 5)
        got = updates.take(4)
        assert [u.sequence for u in got] == [3, 4, 5, 6]
        for update, plus in zip(got, [2, 3, 4, 5], strict=True):
            np.testing.assert_array_equal(update.data(), np.arange(10) + plus)
        assert updates.empty_after(0.3)
    finally:
        sub.disconnect()


def test_persist_false_write_and_patch_stream_but_do_not_store(client: Any, key: str) -> None:
    x = client.write_array(np.array([1, 2, 3]), key=key)
    updates = Collector()
    sub = x.subscribe()
    sub.new_data.add_callback(updates)
    sub.start_in_thread()
    try:
        x.write(np.array([4, 5, 6]), persist=False)
        x.patch(np.array([11]), offset=(1,), persist=False)
        written, patched = updates.take(2)
        np.testing.assert_array_equal(written.data(), [4, 5, 6])
        np.testing.assert_array_equal(patched.data(), [11])
        assert patched.offset == (1,)
        np.testing.assert_array_equal(client[key].read(), [1, 2, 3])
        x.write(np.array([11, 12, 13]))
        np.testing.assert_array_equal(updates.get().data(), [11, 12, 13])
        np.testing.assert_array_equal(client[key].read(), [11, 12, 13])
    finally:
        sub.disconnect()


def test_patch_extend_with_persist_false_is_refused(client: Any, key: str) -> None:
    import pytest

    x = client.write_array(np.array([1, 2, 3]), key=key)
    with pytest.raises(ValueError, match="Cannot PATCH an array with both parameters"):
        x.patch(np.array([4]), offset=3, extend=True, persist=False)
    assert client[key].shape == (3,)


def test_container_subscription_sees_children_and_close(client: Any, key: str) -> None:
    parent = client.create_container(key)
    created, closed = Collector(), Collector()
    sub = parent.subscribe()
    sub.child_created.add_callback(created)
    sub.stream_closed.add_callback(closed)
    sub.start_in_thread(1)
    try:
        for name in ("a", "b", "c"):
            parent.create_container(name)
        got = created.take(3)
        assert [u.key for u in got] == ["a", "b", "c"]
        assert [u.sequence for u in got] == [1, 2, 3]
        for update in got:
            assert update.uri == update.child().item["links"]["self"]
            assert update.structure_family == "container"
        parent.close_stream()
        assert closed.get() is sub
    finally:
        sub.disconnect()


def test_write_block_updates_carry_block_and_store(client: Any, key: str) -> None:
    from tiled.structures.array import ArrayStructure, BuiltinDtype
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import DataSource

    structure = ArrayStructure(
        data_type=BuiltinDtype.from_numpy_dtype(np.dtype("int64")),
        shape=(3, 10),
        chunks=((1, 1, 1), (10,)),
    )
    x = client.new(
        StructureFamily.array,
        [DataSource(structure=structure, structure_family=StructureFamily.array)],
        key=key,
    )
    updates = Collector()
    sub = x.subscribe()
    sub.new_data.add_callback(updates)
    sub.start_in_thread()
    try:
        for row in range(3):
            x.write_block(np.arange(10).reshape(1, 10) + row + 1, block=(row, 0))
        got = updates.take(3)
        assert [u.block for u in got] == [(0, 0), (1, 0), (2, 0)]
        assert all(u.shape == (1, 10) for u in got)
        expected = np.arange(10) + np.arange(1, 4).reshape(3, 1)
        np.testing.assert_array_equal(client[key].read(), expected)
        np.testing.assert_array_equal(client[key].read_block((1, 0)), expected[1:2])
    finally:
        sub.disconnect()
