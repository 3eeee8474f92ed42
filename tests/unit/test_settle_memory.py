"""The gateway's collector settings: what startup loaded is frozen, young collections are spaced out."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from dialguard.app import YOUNG_COLLECTION_EVERY, settle_memory


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_startup_objects_are_frozen_and_young_collections_spaced_out() -> None:
    gc.unfreeze()
    _, older, oldest = gc.get_threshold()
    loaded = [[i] for i in range(1000)]  # long-lived containers, as the rule packs are
    settle_memory()
    assert gc.get_freeze_count() >= len(loaded)
    assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, older, oldest)
    # Out of the collector's sight: no collection walks them again.
    assert not any(o is loaded for o in gc.get_objects())
