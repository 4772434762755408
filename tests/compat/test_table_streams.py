"""Table writes on the stream, seen by the stock client (spec §9 subscription 11-12)."""

from __future__ import annotations

import contextlib
from typing import Any

import pandas as pd
import pyarrow as pa

from tests.compat.conftest import Collector


def test_table_write_then_replace_streams_table_data(
    client: Any, key: str, collector: Collector
) -> None:
    df1 = pd.DataFrame({"x": [1, 2, 3], "y": [1.5, 2.5, 3.5]})
    df2 = pd.DataFrame({"x": [4, 5, 6], "y": [4.5, 5.5, 6.5]})
    node = client.write_table(df1, key=key)
    sub = node.subscribe()
    sub.new_data.add_callback(collector)
    with sub.start_in_thread(start=1):
        first = collector.get()
        assert first.partition is None and first.append is False
        pd.testing.assert_frame_equal(first.data(), df1)
        node.write(df2)
        second = collector.get()
        assert second.append is False and second.sequence == first.sequence + 1
        pd.testing.assert_frame_equal(second.data(), df2)


def test_appendable_table_appends_stream_with_append_true(
    client: Any, key: str, collector: Collector
) -> None:
    schema = pa.schema([("a", pa.int64()), ("b", pa.string())])
    node = client.create_appendable_table(schema, key=key)
    t1 = pa.table({"a": [1, 2], "b": ["x", "y"]})
    t2 = pa.table({"a": [3], "b": ["z"]})
    sub = node.subscribe()
    sub.new_data.add_callback(collector)
    with sub.start_in_thread():
        node.append_partition(0, t1)
        node.append_partition(0, t2)
        updates = collector.take(2)
    assert [(u.append, u.partition) for u in updates] == [(True, 0), (True, 0)]
    received = [pa.Table.from_pandas(u.data(), preserve_index=False).cast(schema) for u in updates]
    assert received[0].equals(t1) and received[1].equals(t2)
    assert pa.concat_tables(received).equals(pa.concat_tables([t1, t2]))
    assert node.read()["a"].tolist() == [1, 2, 3]


def test_rejected_table_write_is_not_streamed(client: Any, key: str, collector: Collector) -> None:
    node = client.write_table(pd.DataFrame({"x": [1]}), key=key)
    sub = node.subscribe()
    sub.new_data.add_callback(collector)
    with sub.start_in_thread():
        with contextlib.suppress(Exception):  # refused by the server (422)
            node.write(pd.DataFrame({"other": ["nope"]}))
        node.write(pd.DataFrame({"x": [9]}))
        update = collector.get()
    assert update.sequence == 2
    assert update.data()["x"].tolist() == [9]
