"""gate.event_loop: serve's event loop, uvloop by default, asyncio's own on request, anything else refused."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from dialguard.cli import main
from dialguard.config import ConfigError, load_settings
from dialguard.loops import loop_factory, loop_name


def test_uvloop_by_default_and_asyncio_on_request() -> None:
    assert load_settings(env={}).gate.event_loop == "uvloop"
    chosen = load_settings(env={"DIALGUARD_GATE_EVENT_LOOP": "asyncio"}).gate.event_loop
    assert chosen == "asyncio"
    assert loop_factory("asyncio") is None
    factory = loop_factory("uvloop")
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop) and loop_name(loop) == "uvloop"
    finally:
        loop.close()
    with asyncio.Runner() as runner:
        assert loop_name(runner.get_loop()) == "asyncio"


def test_another_loop_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r"gate\.event_loop: 'tokio' is not uvloop or asyncio"):
        load_settings(env={"DIALGUARD_GATE_EVENT_LOOP": "tokio"})


def test_the_cli_says_so_and_exits_with_the_usage_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DIALGUARD_GATE_EVENT_LOOP", "tokio")
    assert main(["serve"]) == 2
    assert "gate.event_loop: 'tokio' is not uvloop or asyncio" in capsys.readouterr().err
