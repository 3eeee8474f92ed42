"""The HLR answers file speaks the HTTP provider's status words; any other word is no answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialguard.hlr.providers import HOME_WORDS, TRUE_WORDS, FileProvider, HlrAnswer, HlrError


def provider(tmp_path: Path, *lines: str) -> FileProvider:
    answers = tmp_path / "hlr.csv"
    answers.write_text("\n".join(["number,status,visited_country", *lines]) + "\n", encoding="utf-8")
    return FileProvider(answers)


@pytest.mark.parametrize("word", sorted(TRUE_WORDS))
async def test_every_roaming_word_of_the_http_provider_is_abroad(tmp_path: Path, word: str) -> None:
    answers = provider(tmp_path, f"+48601234567, {word.upper()} ,ES")
    assert await answers.lookup("+48601234567") == HlrAnswer(roaming=True, visited_country="ES")


@pytest.mark.parametrize("word", sorted(HOME_WORDS))
async def test_every_home_word_is_home_whatever_the_country_column_says(tmp_path: Path, word: str) -> None:
    answers = provider(tmp_path, f"+48601234567,{word.title()},ES")
    assert await answers.lookup("+48601234567") == HlrAnswer(roaming=False, visited_country=None)


@pytest.mark.parametrize("word", ["xyz", "", "away", "not roaming", "ES"])
async def test_any_other_word_is_no_answer_naming_the_word_file_and_line(tmp_path: Path, word: str) -> None:
    answers = provider(tmp_path, "+48601234566,home,", f"+48601234567,{word},DE")
    with pytest.raises(HlrError) as failed:
        await answers.lookup("+48601234567")
    assert failed.value.cause == f"unrecognised status {word!r} in {tmp_path / 'hlr.csv'} line 3"
    assert (await answers.lookup("+48601234566")).roaming is False  # the other lines still answer
