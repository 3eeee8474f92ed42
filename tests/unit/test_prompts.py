"""The shipped prompts: every language has every prompt the routes play, in the format Asterisk wants."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

SOUNDS = Path(__file__).resolve().parents[2] / "asterisk-conf" / "sounds"
LANGUAGES = ["en", "es", "pl", "ru", "zh"]
PROMPTS = [
    "notice", "optout-offer", "optout-confirmed", "consent-ask", "consent-confirm", "abandoned", "callback",
]  # fmt: skip


def test_the_routes_play_only_prompts_that_ship() -> None:
    src = Path(__file__).resolve().parents[2] / "src/dialguard"
    # The FastAGI routes play theirs; an origination names the abandonment message's to the dialplan.
    source = (src / "asterisk/call_routes.py").read_text() + (src / "originate.py").read_text()
    for name in PROMPTS:
        assert f'"{name}"' in source or f'dialguard-{name}"' in source, name
    assert {p.stem.removeprefix("dialguard-") for p in (SOUNDS / "en").glob("*.txt")} == set(PROMPTS)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_prompt_is_8khz_mono_16_bit_with_its_text(lang: str) -> None:
    for name in PROMPTS:
        text = SOUNDS / lang / f"dialguard-{name}.txt"
        assert text.read_text(encoding="utf-8").strip(), text
        with wave.open(str(SOUNDS / lang / f"dialguard-{name}.wav")) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
            assert w.getnframes() > 8000  # more than a second of speech
