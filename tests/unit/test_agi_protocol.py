"""The sans-IO AGI layer against what Asterisk's res_agi.c really sends (transcripts and source)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialguard.asterisk.agi_protocol import (
    FAILURE_LINE,
    AgiCommandError,
    ChannelHungUp,
    CommandExchange,
    EnvironmentReader,
    HangupNotice,
    LineSplitter,
    LineTooLong,
    ProtocolError,
    Reply,
    ReplyReader,
    digit_of,
    encode_command,
    parse_reply,
    request_from_env,
)
from tests.fakes.asterisk_agi import parse_args

TRANSCRIPTS = Path(__file__).parent / "transcripts"


def transcript(name: str) -> tuple[list[str], list[str]]:
    """(lines from Asterisk, lines from the gate) of a recorded session."""
    asterisk, gate = [], []
    for line in (TRANSCRIPTS / name).read_text().splitlines():
        if line.startswith("< "):
            asterisk.append(line[2:])
        elif line == "<":
            asterisk.append("")
        elif line.startswith("> "):
            gate.append(line[2:])
    return asterisk, gate


def dialog(name: str) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """(each gate line with the Asterisk lines that came after it, lines after a failure line) of a
    recorded session, environment block left out."""
    exchanges: list[tuple[str, list[str]]] = []
    after_failure: list[str] = []
    for line in (TRANSCRIPTS / name).read_text().splitlines():
        if line.startswith("> "):
            exchanges.append((line[2:], []))
        elif line.startswith("<") and exchanges:
            (after_failure if exchanges[-1][0] == "failure" else exchanges[-1][1]).append(line[2:])
    if exchanges and exchanges[-1][0] == "failure":
        exchanges.pop()
    return exchanges, after_failure


def run_exchange(command: str, lines: list[str]) -> tuple[CommandExchange, Reply | Exception]:
    """Feed one command's lines; the last one, and only it, must end the exchange."""
    exchange = CommandExchange(command)
    for line in lines[:-1]:
        assert exchange.feed_line(line) is None, line
    try:
        final = exchange.feed_line(lines[-1])
    except (ChannelHungUp, AgiCommandError, ProtocolError) as exc:
        return exchange, exc
    assert final is not None, lines[-1]
    return exchange, final


def test_environment_block_from_a_real_session() -> None:
    asterisk, _ = transcript("check_allow.txt")
    splitter = LineSplitter(max_line_bytes=8192)
    # Asterisk writes line by line: feed it in awkward chunks to prove nothing depends on packet edges.
    data = ("\n".join(asterisk) + "\n").encode()
    lines = [line for i in range(0, len(data), 7) for line in splitter.feed(data[i : i + 7])]
    env = EnvironmentReader(max_lines=200)
    rest = iter(lines)
    for line in rest:
        env.feed_line(line)
        if env.done:
            break
    request = env.request()
    assert request.route == "check"
    assert request.args == ("+48601234567", "spring")
    assert request.env["agi_extension"] == "0048601234567"
    assert request.env["agi_accountcode"] == ""  # "agi_accountcode: " with nothing after the space
    assert request.uniqueid == "1763900000.7"
    # What follows the block is replies, and the reader makes sense of all of them, HANGUP included.
    replies = ReplyReader()
    events = [e for line in rest if (e := replies.feed_line(line)) is not None]
    assert events == [
        parse_reply("200 result=1"),
        HangupNotice(),
        parse_reply("200 result=1"),
        parse_reply("200 result=1"),
        parse_reply("511 Command Not Permitted on a dead channel or intercept routine"),
    ]


def test_the_commands_we_send_read_back_as_asterisk_parses_them() -> None:
    _, gate = transcript("check_allow.txt")
    assert encode_command("SET VARIABLE", ["DIALGUARD_REASON", "ok"]).decode().rstrip("\n") == gate[1]
    assert parse_args(gate[2]) == ["VERBOSE", "dialguard: allowed", "1"]


def test_route_and_query_from_the_script_path() -> None:
    env = {"agi_network_script": "check?tenant=acme&x=1", "agi_arg_1": "", "agi_arg_2": "c"}
    request = request_from_env(env)
    assert (request.route, request.args, dict(request.query)) == (
        "check",
        ("", "c"),
        {"tenant": "acme", "x": "1"},
    )


def test_route_from_agi_request_when_no_script_line() -> None:
    assert request_from_env({"agi_request": "agi://10.0.0.5:4573/announce?lang=pl"}).route == "announce"


@pytest.mark.parametrize("name", ["check_allow.txt", "gosub_trying.txt", "usage_then_failure.txt"])
def test_every_reply_in_a_transcript_ends_where_the_next_command_begins(name: str) -> None:
    exchanges, _ = dialog(name)
    assert exchanges
    for command, lines in exchanges:
        exchange, _outcome = run_exchange(command, lines)
        assert exchange.final is not None and exchange.final.text.endswith(lines[-1])


def test_gosub_transcript_interim_then_final() -> None:
    exchanges, _ = dialog("gosub_trying.txt")
    outcomes = [run_exchange(command, lines) for command, lines in exchanges]
    (first, done), (_, retval), (_, missing), (last, gone) = outcomes
    assert isinstance(done, Reply) and (done.code, done.result) == (200, "0")
    assert [r.text for r in first.interim] == ["100 result=0 Trying..."] and not first.hung_up
    assert isinstance(retval, Reply) and retval.data == "tagged"
    # A label not found is a 200 with result=-1 (and AGISTATUS=FAILURE on Asterisk's side), not an error.
    assert isinstance(missing, Reply) and missing.result_int == -1
    assert isinstance(gone, ChannelHungUp) and last.hung_up


def test_usage_transcript_is_a_command_error_and_the_session_ends_in_failure() -> None:
    exchanges, after_failure = dialog("usage_then_failure.txt")
    _, outcome = run_exchange(*exchanges[-1])
    assert isinstance(outcome, AgiCommandError) and outcome.reply.code == 520
    assert "Usage: SET VARIABLE" in outcome.reply.text
    # run_agi ends its loop and, with AGISIGHUP on (the default), says HANGUP once more before closing.
    assert after_failure == ["HANGUP"]


@pytest.mark.parametrize(
    ("lines", "code", "hung_up", "interim"),
    [
        (["200 result=1"], 200, False, 0),
        (["HANGUP", "200 result=1"], 200, True, 0),  # HANGUP at the top of run_agi's loop
        (["100 result=0 Trying...", "200 result=0 Gosub complete"], 200, False, 1),
        (["100 result=0 Trying...", "200 result=0 Gosub complete (abnormal exit)"], 200, False, 1),
        (["HANGUP", "100 result=0 Trying...", "200 result=0 Gosub complete"], 200, True, 1),
        (["200 result=-1 Gosub label not found"], 200, False, 0),
        (["200 result=-1 endpos=0"], 200, False, 0),  # STREAM FILE of a file that does not exist
    ],
)
def test_final_reply_shapes(lines: list[str], code: int, hung_up: bool, interim: int) -> None:
    exchange, final = run_exchange("X", lines)
    assert isinstance(final, Reply) and final.code == code and final is exchange.final
    assert (exchange.hung_up, len(exchange.interim)) == (hung_up, interim)


DEAD = "511 Command Not Permitted on a dead channel or intercept routine"


@pytest.mark.parametrize(
    ("lines", "error", "hung_up"),
    [
        ([DEAD], ChannelHungUp, True),
        (["HANGUP", DEAD], ChannelHungUp, True),
        (["510 Invalid or unknown command"], AgiCommandError, False),
        (["HANGUP", "510 Invalid or unknown command"], AgiCommandError, True),
        (
            [
                "520-Invalid command syntax.  Proper usage follows:",
                " Usage: WAIT FOR DIGIT <timeout>",
                "520 End of proper usage.",
            ],
            AgiCommandError,
            False,
        ),
        (["520 Invalid command syntax.  Proper usage not available."], AgiCommandError, False),
        (["503 result=-2 Memory allocation failure"], ProtocolError, False),  # GOSUB out of memory
    ],
)
def test_reply_shapes_that_end_the_command_with_an_error(
    lines: list[str], error: type[Exception], hung_up: bool
) -> None:
    exchange, outcome = run_exchange("X", lines)
    assert type(outcome) is error
    assert exchange.hung_up is hung_up


def test_the_interim_reply_is_not_mistaken_for_the_final_one() -> None:
    exchange = CommandExchange("GOSUB")
    assert exchange.feed_line("100 result=0 Trying...") is None
    assert exchange.final is None
    reply = exchange.feed_line("200 result=0 Gosub complete")
    assert reply is not None and reply.ok and not reply.interim


def test_endless_interim_replies_are_refused() -> None:
    exchange = CommandExchange("GOSUB")
    for _ in range(CommandExchange.MAX_INTERIM):
        assert exchange.feed_line("100 result=0 Trying...") is None
    with pytest.raises(ProtocolError, match="interim"):
        exchange.feed_line("100 result=0 Trying...")


def test_nothing_may_follow_the_final_reply() -> None:
    exchange = CommandExchange("VERBOSE")
    exchange.feed_line("200 result=1")
    with pytest.raises(ProtocolError, match="already had its reply"):
        exchange.feed_line("200 result=1")


def test_the_failure_line_is_what_run_agi_looks_for() -> None:
    # run_agi: strncasecmp(buf, "failure", 7) == 0 ends the session with AGISTATUS=FAILURE.
    assert FAILURE_LINE[:7].lower() == b"failure" and FAILURE_LINE.endswith(b"\n")
    assert FAILURE_LINE.count(b"\n") == 1  # one line: nothing after it could be read as a command


@pytest.mark.parametrize(
    ("line", "code", "result", "data", "extras"),
    [
        ("200 result=1", 200, "1", None, {}),
        ("100 result=0 Trying...", 100, "0", None, {}),
        ("200 result=0 Gosub complete", 200, "0", None, {}),
        ("503 result=-2 Memory allocation failure", 503, "-2", None, {}),
        ("200 result=0", 200, "0", None, {}),
        ("200 result=1 (+48 601 (mobile))", 200, "1", "+48 601 (mobile)", {}),
        ("200 result=49 endpos=12960", 200, "49", None, {"endpos": "12960"}),
        ("200 result=-1 endpos=0", 200, "-1", None, {"endpos": "0"}),
        ("200 result=0 (timeout)", 200, "0", "timeout", {}),
        ("200 result=35 (dtmf) endpos=4000", 200, "35", "dtmf", {"endpos": "4000"}),
        ("510 Invalid or unknown command", 510, None, None, {}),
        ("511 Command Not Permitted on a dead channel or intercept routine", 511, None, None, {}),
    ],
)
def test_reply_shapes_asterisk_sends(
    line: str, code: int, result: str | None, data: str | None, extras: dict[str, str]
) -> None:
    reply = parse_reply(line)
    assert (reply.code, reply.result, reply.data, dict(reply.extras)) == (code, result, data, extras)


def test_usage_block_is_one_reply() -> None:
    reader = ReplyReader()
    lines = [
        "520-Invalid command syntax.  Proper usage follows:",
        " Usage: SET VARIABLE <variablename> <value>",
        "520 End of proper usage.",
        "200 result=1",
    ]
    events = [reader.feed_line(line) for line in lines]
    assert events[:2] == [None, None]
    assert isinstance(events[2], Reply) and events[2].code == 520 and "Usage" in events[2].text
    assert events[3] == parse_reply("200 result=1")  # in step again after the block


@pytest.mark.parametrize("line", ["hello", "20 result=1", "200 nothing", ""])
def test_malformed_reply_lines_are_protocol_errors(line: str) -> None:
    with pytest.raises(ProtocolError):
        ReplyReader().feed_line(line)


def test_a_usage_block_that_never_ends_is_refused() -> None:
    reader = ReplyReader()
    reader.feed_line("520-Invalid command syntax.  Proper usage follows:")
    for _ in range(ReplyReader.MAX_USAGE_LINES - 1):  # the 520- line counts too
        assert reader.feed_line(" more usage") is None
    with pytest.raises(ProtocolError):
        reader.feed_line(" more usage")


@pytest.mark.parametrize("line", ["agi_network yes", "hello: world", "agi bad: x", "GET VARIABLE X"])
def test_malformed_environment_lines_are_refused(line: str) -> None:
    with pytest.raises(ProtocolError):
        EnvironmentReader(max_lines=10).feed_line(line)


def test_environment_block_is_bounded() -> None:
    env = EnvironmentReader(max_lines=3)
    for i in range(3):
        env.feed_line(f"agi_arg_{i + 1}: x")
    with pytest.raises(ProtocolError, match="longer than 3 lines"):
        env.feed_line("agi_arg_4: x")


def test_incomplete_environment_has_no_request() -> None:
    env = EnvironmentReader(max_lines=10)
    env.feed_line("agi_network: yes")
    with pytest.raises(ProtocolError):
        env.request()


def test_overlong_lines_are_refused_even_without_a_newline() -> None:
    splitter = LineSplitter(max_line_bytes=16)
    with pytest.raises(LineTooLong):
        splitter.feed(b"x" * 17)
    with pytest.raises(LineTooLong):
        LineSplitter(max_line_bytes=16).feed(b"y" * 20 + b"\n")
    assert LineSplitter(max_line_bytes=16).feed(b"z" * 16 + b"\n") == ["z" * 16]


def test_line_breaks_cannot_smuggle_a_second_command() -> None:
    with pytest.raises(ValueError, match="line breaks"):
        encode_command("SET VARIABLE", ["X", "a\nHANGUP"])


@given(
    st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=60)
)
def test_any_value_survives_asterisks_parser(value: str) -> None:
    line = encode_command("SET VARIABLE", ["DIALGUARD_REASON", value]).decode().rstrip("\n")
    assert parse_args(line) == ["SET", "VARIABLE", "DIALGUARD_REASON", value]


@pytest.mark.parametrize(
    ("result", "digit"), [(49, "1"), (48, "0"), (35, "#"), (42, "*"), (0, None), (-1, None)]
)
def test_digits_come_as_ascii_codes(result: int, digit: str | None) -> None:
    assert digit_of(result) == digit


@given(st.text(alphabet=' \t"\\abc', max_size=30))
def test_the_fakes_fast_parser_agrees_with_the_c_loop(line: str) -> None:
    from tests.fakes.asterisk_agi import _parse_args_slow

    assert parse_args(line) == _parse_args_slow(line)
