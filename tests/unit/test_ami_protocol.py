"""The AMI codec on the bytes Asterisk sends (main/manager.c), in every split they can arrive in."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialguard.asterisk.ami_protocol import AmiMessage, AmiParser, AmiProtocolError, Banner, encode_action

# As Asterisk 22 writes them: a login, FullyBooted, a channel with channelvars=DIALGUARD_CALL_ID.
TRANSCRIPT = (
    b"Asterisk Call Manager/9.0.0\r\n"
    b"Response: Success\r\nActionID: dg-1\r\nMessage: Authentication accepted\r\n\r\n"
    b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 12\r\nLastReload: 12\r\n"
    b"Status: Fully Booted\r\n\r\n"
    b"Event: Newchannel\r\nPrivilege: call,all\r\nChannel: PJSIP/trunk-00000001\r\nChannelState: 0\r\n"
    b"ChannelStateDesc: Down\r\nCallerIDName: Acme: sales\r\nUniqueid: 1700000000.1\r\n"
    b"Linkedid: 1700000000.1\r\n"
    b"ChanVariable: DIALGUARD_CALL_ID=6d1f3c3e-2b7a-4a8e-9d50-0a5c2f6b9e11\r\n\r\n"
)


def parse_all(chunks: list[bytes]) -> list[Banner | AmiMessage]:
    parser = AmiParser()
    out: list[Banner | AmiMessage] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


def test_a_transcript_reads_as_a_banner_a_response_and_two_events() -> None:
    banner, login, booted, channel = parse_all([TRANSCRIPT])
    assert banner == Banner("Asterisk Call Manager/9.0.0") and banner.is_asterisk
    assert isinstance(login, AmiMessage) and login.is_response and login.get("actionid") == "dg-1"
    assert isinstance(booted, AmiMessage) and booted.event == "FullyBooted" and not booted.is_response
    assert isinstance(channel, AmiMessage)
    assert channel.get("CallerIDName") == "Acme: sales"  # only the first colon splits
    assert channel.variables() == {"DIALGUARD_CALL_ID": "6d1f3c3e-2b7a-4a8e-9d50-0a5c2f6b9e11"}


@given(st.lists(st.integers(min_value=1, max_value=len(TRANSCRIPT) - 1), max_size=20))
def test_any_split_of_the_bytes_reads_the_same(cuts: list[int]) -> None:
    points = [0, *sorted(set(cuts)), len(TRANSCRIPT)]
    chunks = [TRANSCRIPT[a:b] for a, b in itertools.pairwise(points)]
    assert parse_all(chunks) == parse_all([TRANSCRIPT])


def test_bare_newlines_and_blank_lines_between_messages_are_tolerated() -> None:
    items = parse_all([b"Asterisk Call Manager/9.0.0\n\n\nEvent: Hangup\nCause: 16\n\n"])
    assert [i.get("Cause") for i in items if isinstance(i, AmiMessage)] == ["16"]


def test_asterisk_11_and_destination_channel_variables() -> None:
    (msg,) = [
        i
        for i in parse_all(
            [
                b"Asterisk Call Manager/1.3\r\nEvent: DialBegin\r\n"
                b"ChanVariable(SIP/a-1): DIALGUARD_CALL_ID=x\r\nDestChanVariable: DIALGUARD_CALL_ID=y\r\n\r\n"
            ]
        )
        if isinstance(i, AmiMessage)
    ]
    assert msg.variables() == {"DIALGUARD_CALL_ID": "x"}
    assert msg.variables("Dest") == {"DIALGUARD_CALL_ID": "y"}


def test_a_line_without_a_colon_is_kept_unnamed() -> None:
    (_, msg) = parse_all([b"Asterisk Call Manager/9.0.0\r\nResponse: Success\r\nfree text\r\n\r\n"])
    assert isinstance(msg, AmiMessage) and ("", "free text") in msg.lines


def test_an_endless_line_is_a_protocol_error_not_a_growing_buffer() -> None:
    parser = AmiParser(max_line_bytes=1024)
    parser.feed(b"Asterisk Call Manager/9.0.0\r\n")
    with pytest.raises(AmiProtocolError, match="1024"):
        parser.feed(b"x" * 2000)


def test_an_endless_message_is_a_protocol_error() -> None:
    parser = AmiParser(max_lines=10)
    parser.feed(b"Asterisk Call Manager/9.0.0\r\n")
    with pytest.raises(AmiProtocolError, match="10 lines"):
        parser.feed(b"A: b\r\n" * 11)


def test_invalid_utf8_from_a_caller_name_does_not_break_the_link() -> None:
    (_, msg) = parse_all(
        [b"Asterisk Call Manager/9.0.0\r\nEvent: Newchannel\r\nCallerIDName: \xff\xfe\r\n\r\n"]
    )
    assert isinstance(msg, AmiMessage) and msg.get("CallerIDName") == "\ufffd\ufffd"


def test_actions_are_encoded_with_crlf_and_a_blank_line() -> None:
    data = encode_action("Originate", "dg-9", [("Channel", "PJSIP/123@trunk"), ("Variable", "A=1,2")])
    assert data == (
        b"Action: Originate\r\nActionID: dg-9\r\nChannel: PJSIP/123@trunk\r\nVariable: A=1,2\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Variable", "X=1\r\nAction: Originate"),
        ("Variable", "X=1\nChannel: x"),
        ("Bad: name", "v"),
        ("", "v"),
    ],
)
def test_a_value_that_would_inject_headers_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match="cannot be sent"):
        encode_action("Originate", "1", [(name, value)])
