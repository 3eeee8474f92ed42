"""A decision's hash with its body encoded once is the hash of its canonical row, byte for byte."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from dialguard.store.sealing import canonical, decision_hash, decision_hash_and_body

ROW: dict[str, Any] = {
    "call_id": uuid.UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
    "number": "+48601234567",
    "campaign": "default",
    "verdict": "BLOCK",
    "reason": "dnc.internal",
    "rules_version": "2026.11",
    "decided_at": datetime(2026, 11, 23, 15, 0, tzinfo=UTC),
    "recorded": True,
    "writer": "host:1",
}

BODIES = [
    {},
    {"reasons": [{"code": "dnc.internal", "passed": False, "detail": {"lists": ["internal"]}}]},
    {"zeta": 1, "alpha": [1.5, None, True], "nested": {"b": "ż", "a": 'łódź \u2028 "q" \\'}},
    {"next_callable_at": "2030-03-04T13:00:00+00:00", "extra": {"shadow": {"codes": []}}},
]


@pytest.mark.parametrize("body", BODIES)
def test_the_hash_is_the_canonical_rows_and_the_text_its_body(body: dict[str, Any]) -> None:
    row = {**ROW, "body": body}
    digest, text = decision_hash_and_body(row)
    assert digest == decision_hash(row)
    assert text == canonical(body).decode()
    assert json.loads(text) == body


def test_times_in_other_zones_hash_as_their_utc_instant() -> None:
    here = ROW["decided_at"].astimezone(timezone(timedelta(hours=-5)))
    row = {**ROW, "decided_at": here, "body": BODIES[1]}
    assert decision_hash_and_body(row)[0] == decision_hash({**row, "decided_at": ROW["decided_at"]})
