"""The shipped dialplan, loaded the way an administrator installs it, for the tests that run it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.fakes.dialplan import Channel, Dialplan, load_dialplan

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "asterisk-conf" / "extensions_dialguard.conf"
PHONES = "phones"  # the administrator's own context, the one the README says to include from


def installed(directory: Path, conf: Path = CONF) -> Dialplan:
    """extensions.conf as README's "Wire it into Asterisk" has it: the include, and the #include."""
    (directory / "extensions.conf").write_text(
        f"[{PHONES}]\ninclude => dialguard-outbound\n\n#include {conf}\n"
    )
    return load_dialplan(directory / "extensions.conf")


@dataclass
class GateAnswers:
    """What the gate's FastAGI routes leave on the channel (the Contracts' channel variables).

    ``None`` for a route means the gate cannot be reached: Asterisk sets nothing and AGISTATUS=FAILURE.
    """

    check: Mapping[str, str] | None = None
    announce: Mapping[str, str] | None = None
    sessions: list[tuple[str, list[str]]] = field(default_factory=list)

    def __call__(self, url: str, args: list[str], chan: Channel) -> str:
        route = url.rsplit("/", 1)[-1]
        self.sessions.append((route, args))
        answer = {"check": self.check, "announce": self.announce}.get(route)
        if answer is None:
            return "FAILURE"
        for name, value in answer.items():
            chan.set(name, value)
        return "SUCCESS"


def emergency_extensions(dp: Dialplan) -> list[str]:
    """Every number [dialguard-emergency] dials before any check, as written there (911, 9911 ...)."""
    return [e.exten for e in dp.contexts["dialguard-emergency"].extensions]
