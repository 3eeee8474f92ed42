"""The oldest PostgreSQL dialguard runs on: 14, for DETACH PARTITION ... CONCURRENTLY (list retirement)."""

from __future__ import annotations

import pytest
from asyncpg.types import ServerVersion

from dialguard.store.migrate import MigrationError, require_supported_server


def release(major: int, minor: int, level: str = "final") -> ServerVersion:
    return ServerVersion(major, minor, 0, level, 0)


@pytest.mark.parametrize("version", [release(13, 22), release(9, 6)])
def test_a_server_older_than_14_is_refused_with_what_to_do(version: ServerVersion) -> None:
    with pytest.raises(MigrationError) as refused:
        require_supported_server(version)
    message = str(refused.value)
    assert f"PostgreSQL {version.major}.{version.minor}" in message
    assert "14 or newer" in message and "DETACH PARTITION" in message


@pytest.mark.parametrize("version", [release(14, 0), release(15, 20), release(18, 0, "beta")])
def test_14_and_newer_are_accepted(version: ServerVersion) -> None:
    require_supported_server(version)
