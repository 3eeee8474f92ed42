"""The Asterisk Manager Interface as bytes: parse what Asterisk sends, encode what we send. No sockets.

What Asterisk sends (``main/manager.c``): one banner line, ``Asterisk Call Manager/<version>``, then
messages of ``Key: Value`` lines ended by an empty line. A message is a response when it carries
``Response`` (``Success``, ``Error``, ``Goodbye``), else an event (``Event``). Header names are matched
without regard to case, as Asterisk's own ``astman_get_header`` does; a key may repeat
(``ChanVariable``), so a message keeps its lines in order.

>>> parser = AmiParser()
>>> parser.feed(b"Asterisk Call Manager/9.0.0\\r\\nResponse: Success\\r\\nActionID: 1\\r\\n")
[Banner(text='Asterisk Call Manager/9.0.0')]
>>> [m.get("ActionID") for m in parser.feed(b"Message: Authentication accepted\\r\\n\\r\\n")]
['1']
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MAX_LINE_BYTES = 64 * 1024  # Asterisk's own event lines are far shorter; one longer is a broken peer
MAX_MESSAGE_LINES = 1024


class AmiProtocolError(Exception):
    """The peer sent what no Asterisk sends: the link is not to be trusted and is dropped."""


@dataclass(frozen=True, slots=True)
class Banner:
    """The first line of a session: ``Asterisk Call Manager/<AMI version>``."""

    text: str

    @property
    def is_asterisk(self) -> bool:
        return self.text.startswith("Asterisk Call Manager/")


@dataclass(frozen=True, slots=True)
class AmiMessage:
    """One response or event, its header lines in the order they came."""

    lines: tuple[tuple[str, str], ...]

    def get(self, key: str, default: str = "") -> str:
        """The first value of ``key`` (any case), or ``default``."""
        wanted = key.lower()
        for name, value in self.lines:
            if name.lower() == wanted:
                return value
        return default

    def get_all(self, key: str) -> list[str]:
        wanted = key.lower()
        return [value for name, value in self.lines if name.lower() == wanted]

    @property
    def is_response(self) -> bool:
        return any(name.lower() == "response" for name, _ in self.lines)

    @property
    def event(self) -> str:
        """The event's name; empty for a response."""
        return self.get("Event")

    def variables(self, prefix: str = "") -> dict[str, str]:
        """The channel variables manager.conf's ``channelvars`` adds to a channel's snapshot.

        Asterisk 12 and later write ``ChanVariable: NAME=value`` (``DestChanVariable`` for the
        destination of a dial); Asterisk 11 wrote ``ChanVariable(Channel): NAME=value``.
        """
        key = f"{prefix}chanvariable".lower()
        found: dict[str, str] = {}
        for name, value in self.lines:
            lowered = name.lower()
            if lowered == key or (lowered.startswith(key + "(") and lowered.endswith(")")):
                var, sep, val = value.partition("=")
                if sep:
                    found.setdefault(var, val)
        return found


class AmiParser:
    """Bytes in, banners and messages out; keeps an incomplete line or message across ``feed`` calls."""

    def __init__(self, *, max_line_bytes: int = MAX_LINE_BYTES, max_lines: int = MAX_MESSAGE_LINES) -> None:
        self._buffer = bytearray()
        self._lines: list[tuple[str, str]] = []
        self._banner_seen = False
        self._max_line = max_line_bytes
        self._max_lines = max_lines

    def feed(self, data: bytes) -> list[Banner | AmiMessage]:
        self._buffer += data
        out: list[Banner | AmiMessage] = []
        for line in self._complete_lines():
            if not self._banner_seen:
                self._banner_seen = True
                out.append(Banner(line))
            elif line == "":
                if self._lines:  # blank lines between messages carry nothing
                    out.append(AmiMessage(tuple(self._lines)))
                    self._lines = []
            else:
                self._add(line)
        if len(self._buffer) > self._max_line:
            raise AmiProtocolError(f"a line of more than {self._max_line} bytes")
        return out

    def _complete_lines(self) -> Iterator[str]:
        while (end := self._buffer.find(b"\n")) >= 0:
            raw = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            if len(raw) > self._max_line:
                raise AmiProtocolError(f"a line of more than {self._max_line} bytes")
            # Asterisk writes UTF-8 but passes callers' names through as they came: never fail on them.
            yield raw.decode("utf-8", errors="replace")

    def _add(self, line: str) -> None:
        name, sep, value = line.partition(":")
        if not sep:
            # manager.c writes no such line; a module's free text would be one. Keep it, unnamed.
            name, value = "", line
        self._lines.append((name.strip(), value.strip()))
        if len(self._lines) > self._max_lines:
            raise AmiProtocolError(f"a message of more than {self._max_lines} lines")


def encode_action(action: str, action_id: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """One action as Asterisk reads it. A CR or LF inside a name or value would let a caller's text
    inject headers (a second ``Action``), so it is refused rather than sent.

    >>> encode_action("Ping", "7")
    b'Action: Ping\\r\\nActionID: 7\\r\\n\\r\\n'
    """
    lines = [("Action", action), ("ActionID", action_id), *headers]
    for name, value in lines:
        if not name or any(c in name for c in ":\r\n") or any(c in value for c in "\r\n"):
            raise ValueError(f"AMI header {name!r} cannot be sent: a name with ':' or a line break in it")
    return "".join(f"{name}: {value}\r\n" for name, value in lines).encode() + b"\r\n"
