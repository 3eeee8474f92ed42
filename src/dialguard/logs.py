"""Logging as an operator reads it: text (the default) or one JSON object a line, numbers masked.

Phone numbers are personal data: with ``log.mask_numbers`` (the default) every number in a log line
keeps its first five digits and last two (``+1202*****43``), enough to tell calls apart and to find
them in the evidence, which holds them whole. A line that must name a number in full to be acted on
(an opt-out that could not be kept) says so with ``extra={"unmasked": True}``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

# E.164 (+ and 8-15 digits) or a bare run of 10-15 digits; not ids, times or UUIDs (bounded by non-digits).
NUMBER = re.compile(r"(?<![\w-])(\+\d{8,15}|\d{10,15})(?![\w-])")
# What a record carries beyond logging's own attributes: the JSON lines keep them as keys.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "unmasked"}


def mask(text: str) -> str:
    """>>> mask("call to +12025550143 blocked")
    'call to +1202*****43 blocked'
    """
    return NUMBER.sub(lambda m: m[0][:5] + "*" * (len(m[0]) - 7) + m[0][-2:], text)


class MaskNumbers(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "unmasked", False):
            record.msg, record.args = mask(record.getMessage()), None
            for key, value in vars(record).items():
                if key not in _STANDARD and isinstance(value, str):
                    setattr(record, key, mask(value))
        return True


class JsonLines(logging.Formatter):
    """One object a line with stable keys: ts, level, logger, message, then the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure(*, level: str, fmt: str, mask_numbers: bool, quiet: bool = False) -> None:
    """The process's one log handler, on stderr. ``quiet``: warnings and worse only (CLI commands,
    which print their own results)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if mask_numbers:
        handler.addFilter(MaskNumbers())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.WARNING, logging.getLevelName(level.upper())) if quiet else level.upper())
    if quiet and logging.getLevelName(level.upper()) <= logging.INFO:
        # A decision is logged from every entry point, the command line's included.
        logging.getLogger("dialguard.decisions").setLevel(logging.INFO)
