"""The stock-client streaming tutorials (tests/compat/test_tutorials.py), against two workers
sharing Redis: the ``client`` fixture of this package connects to ``redis_workers``."""

from __future__ import annotations

from tests.compat.test_tutorials import (  # noqa: F401  (collected here, with this package's client)
    test_container_subscription_sees_children_and_close,
    test_live_updates_without_start_only_see_later_writes,
    test_patch_extend_with_persist_false_is_refused,
    test_persist_false_write_and_patch_stream_but_do_not_store,
    test_root_child_created_then_new_data_replay_and_close,
    test_start_n_replays_then_goes_live,
    test_write_block_updates_carry_block_and_store,
)
from tests.conftest import needs_redis_hub

pytestmark = needs_redis_hub
