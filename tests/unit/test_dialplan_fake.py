"""The dialplan fake (tests/fakes/dialplan.py) against what Asterisk's source says it does.

Each case is a behaviour of pbx/pbx_config.c, main/config.c or main/pbx.c that the tests of the shipped
dialplan rely on; if the fake drifted from Asterisk, those tests would prove nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.dialplan import (
    Channel,
    Dialplan,
    DialplanError,
    call,
    evaluate,
    ext_cmp,
    extension_match,
    find_extension,
    load_dialplan,
    separate_args,
    subroutine,
)


def dialplan(tmp_path: Path, text: str, **others: str) -> Dialplan:
    for name, body in others.items():
        (tmp_path / f"{name}.conf").write_text(body)
    (tmp_path / "extensions.conf").write_text(text)
    return load_dialplan(tmp_path / "extensions.conf")


def app_of(dp: Dialplan, context: str, exten: str, priority: int = 1) -> tuple[str, str]:
    found = find_extension(dp, context, exten, priority)
    assert found is not None, f"{exten} not found from {context}"
    return found.entry.app, found.entry.data


# ---------------------------------------------------------------- comments (main/config.c)


def test_a_semicolon_in_the_arguments_starts_a_comment_and_leaves_no_closing_parenthesis(
    tmp_path: Path,
) -> None:
    dp = dialplan(tmp_path, "[c]\nexten => 1,1,Verbose(1,opt-out on call ${ARG1}; hanging up)\n")
    assert app_of(dp, "c", "1") == ("Verbose", "1,opt-out on call ${ARG1}")
    assert any("No closing parenthesis found?" in w for w in dp.warnings), dp.warnings


def test_an_escaped_semicolon_reaches_the_application_without_its_backslash(tmp_path: Path) -> None:
    dp = dialplan(tmp_path, "[c]\nexten => 1,1,Verbose(1,opt-out\\; hanging up) ; a comment (*)\n")
    assert app_of(dp, "c", "1") == ("Verbose", "1,opt-out; hanging up")
    assert dp.warnings == []


def test_block_comments_span_lines_and_may_sit_inside_a_line(tmp_path: Path) -> None:
    dp = dialplan(
        tmp_path,
        "[c]\n"
        "exten => 1,1,NoOp(a) ;-- from here\n"
        "exten => 2,1,NoOp(hidden)\n"
        "to here --; \n"
        "exten => 3,1,NoOp(b;-- inline --;c)\n",
    )
    assert find_extension(dp, "c", "2") is None
    assert app_of(dp, "c", "1") == ("NoOp", "a")
    assert app_of(dp, "c", "3") == ("NoOp", "bc")


# ---------------------------------------------------------------- exten, same, priorities (pbx_config.c)


def test_same_n_and_labels_continue_the_last_extension(tmp_path: Path) -> None:
    dp = dialplan(
        tmp_path,
        "[c]\nexten => 100,1,NoOp(one)\n same => n,NoOp(two)\n same => n(end),Hangup()\n"
        "exten => 100,10,NoOp(ten)\n same => n,NoOp(eleven)\n",
    )
    ext = dp.contexts["c"].extensions[0]
    assert {p: e.app for p, e in ext.priorities.items()} == {
        1: "NoOp",
        2: "NoOp",
        3: "Hangup",
        10: "NoOp",
        11: "NoOp",
    }
    assert ext.labels == {"end": 3}


def test_a_priority_already_in_use_is_refused_with_a_warning(tmp_path: Path) -> None:
    dp = dialplan(tmp_path, "[c]\nexten => 1,1,NoOp(first)\nexten => 1,1,NoOp(second)\n")
    assert app_of(dp, "c", "1") == ("NoOp", "first")
    assert any("already in use" in w for w in dp.warnings)


def test_the_first_equals_sign_splits_name_and_value(tmp_path: Path) -> None:
    dp = dialplan(tmp_path, "[globals]\nA=x=y ; comment\n[c]\nexten => 1,1,Set(B=${A})\n")
    assert dp.globals == {"A": "x=y"}
    assert app_of(dp, "c", "1") == ("Set", "B=${A}")


def test_globals_substitute_earlier_globals_and_extension_names(tmp_path: Path) -> None:
    dp = dialplan(tmp_path, "[globals]\nP=9\nQ=${P}11\n[c]\nexten => ${Q},1,NoOp()\n")
    assert dp.globals["Q"] == "911"
    assert find_extension(dp, "c", "911") is not None


def test_an_included_file_is_read_relative_to_the_configuration_directory(tmp_path: Path) -> None:
    # After #include, the including file's next lines stay in the category they were in.
    dp = dialplan(
        tmp_path,
        "[a]\nexten => 1,1,NoOp(a1)\n#include other.conf\nexten => 2,1,NoOp(a2)\n",
        other="[b]\nexten => 3,1,NoOp(b3)\n",
    )
    assert app_of(dp, "a", "2") == ("NoOp", "a2")
    assert app_of(dp, "b", "3") == ("NoOp", "b3")


def test_a_missing_include_does_not_load(tmp_path: Path) -> None:
    with pytest.raises(DialplanError, match="does not exist"):
        dialplan(tmp_path, "[a]\n#include nowhere.conf\n")


# ---------------------------------------------------------------- ordering and matching (main/pbx.c)


def test_plain_extensions_sort_before_every_pattern_whatever_the_file_order(tmp_path: Path) -> None:
    dp = dialplan(tmp_path, "[c]\nexten => _X.,1,NoOp(pattern)\nexten => 911,1,NoOp(exact)\n")
    assert app_of(dp, "c", "911") == ("NoOp", "exact")
    assert app_of(dp, "c", "912") == ("NoOp", "pattern")


def test_patterns_sort_by_the_smallest_set_position_by_position(tmp_path: Path) -> None:
    dp = dialplan(
        tmp_path,
        "[c]\n"
        + "".join(
            f"exten => {p},1,NoOp({p})\n" for p in ["_X!", "_X.", "_NXX", "_[2-9]11", "_9XX", "_9[01]1"]
        ),
    )
    # '9' (one character) < [01] (two) < N = [2-9] (eight; then '1' < X) < X (ten) < '.' < '!'
    assert [e.name for e in dp.contexts["c"].extensions] == [
        "_9[01]1",
        "_9XX",
        "_[2-9]11",
        "_NXX",
        "_X.",
        "_X!",
    ]
    assert app_of(dp, "c", "911") == ("NoOp", "_9[01]1")
    assert app_of(dp, "c", "922") == ("NoOp", "_9XX")
    assert app_of(dp, "c", "9") == ("NoOp", "_X!")


@pytest.mark.parametrize(
    ("pattern", "matches", "does_not"),
    [
        ("_X.", ["12", "2025550143"], ["1", "+1", ""]),
        ("_X!", ["1", "12"], ["+1"]),
        ("_+X.", ["+48601234567"], ["48601234567", "+"]),
        ("_NXX", ["212", "999"], ["112", "2121"]),
        ("_Z", ["1", "9"], ["0"]),
        ("_[13-5]", ["1", "3", "4", "5"], ["2", "6"]),
        ("_1-800-NXX-XXXX", ["18005550143"], ["18001550143"]),
        ("911", ["911", "9-1-1"], ["9110", "91"]),
    ],
)
def test_pattern_characters(pattern: str, matches: list[str], does_not: list[str]) -> None:
    for number in matches:
        assert extension_match(pattern, number), number
    for number in does_not:
        assert not extension_match(pattern, number), number


def test_ext_cmp_puts_a_digit_before_a_set_before_a_wildcard() -> None:
    assert ext_cmp("911", "_X.") < 0
    assert ext_cmp("_9XX", "_NXX") < 0
    assert ext_cmp("_X.", "_X!") < 0
    assert ext_cmp("_X.", "_X.") == 0


def test_own_extensions_beat_includes_and_includes_go_in_the_order_written(tmp_path: Path) -> None:
    dp = dialplan(
        tmp_path,
        "[phones]\ninclude => first\ninclude => second\nexten => _9X.,1,NoOp(own)\n"
        "[first]\nexten => 911,1,NoOp(first)\n"
        "[second]\nexten => 911,1,NoOp(second)\nexten => _X.,1,NoOp(second pattern)\n",
    )
    assert app_of(dp, "phones", "911") == ("NoOp", "own")
    assert app_of(dp, "phones", "811") == ("NoOp", "second pattern")
    assert app_of(dp, "first", "911") == ("NoOp", "first")


def test_an_extension_without_the_priority_asked_for_gives_way_to_the_next_match(tmp_path: Path) -> None:
    dp = dialplan(tmp_path, "[c]\nexten => 911,2,NoOp(two)\nexten => _X.,1,NoOp(pattern)\n")
    assert app_of(dp, "c", "911") == ("NoOp", "pattern")
    assert app_of(dp, "c", "911", 2) == ("NoOp", "two")


# ---------------------------------------------------------------- running a call


def test_separate_args_keeps_parentheses_together_and_the_last_takes_the_rest() -> None:
    assert separate_args("1,a (b,c),d", ",", remove_chars=True, arraylen=2) == ["1", "a (b,c),d"]
    assert separate_args('x,"a,b",U(c^d)', ",", remove_chars=True, arraylen=128) == ["x", "a,b", "U(c^d)"]
    assert separate_args("a,", ",", remove_chars=False, arraylen=128) == ["a", ""]


def test_expressions_compare_strings_with_their_quotes() -> None:
    assert evaluate('"" = ""') == "1"
    assert evaluate('"ALLOW" = "ALLOW"') == "1"
    assert evaluate('"BLOCK" != "ALLOW"') == "1"
    assert evaluate('"A" = "B" | "C" = "C"') == "1"
    assert evaluate('"A" = "A" & "B" = "C"') == "0"
    with pytest.raises(DialplanError):
        evaluate(" = ALLOW")  # ${VERDICT} unquoted and empty: a syntax error in Asterisk


def test_a_call_runs_gotoif_execif_gosub_and_u_on_dial(tmp_path: Path) -> None:
    dp = dialplan(
        tmp_path,
        "[out]\n"
        'exten => _X.,1,GotoIf($["${EXTEN:0:1}" = "9"]?strip)\n'
        " same => n,Dial(T/${EXTEN},,U(sub^${EXTEN}^x))\n"
        " same => n(strip),ExecIf($[1]?Verbose(1,dropping the 9 of ${EXTEN}))\n"
        " same => n,Goto(${EXTEN:1},1)\n"
        "[sub]\n"
        "exten => s,1,Verbose(1,sub ${ARG1} ${ARG2} ${ARGC})\n"
        " same => n,Set(GOSUB_RESULT=ABORT)\n"
        " same => n,Return()\n",
    )
    chan = call(dp, "out", "9123")
    assert [(e.kind, e.data) for e in chan.events if e.kind in {"Verbose", "Dial", "Aborted"}] == [
        ("Verbose", "dropping the 9 of 9123"),
        ("Dial", "T/123,,U(sub^123^x)"),
        ("Aborted", "ABORT"),
    ]
    assert chan.callee is not None
    assert [e.data for e in chan.callee.events if e.kind == "Verbose"] == ["sub 123 x 2"]
    assert chan.ended == "Aborted"


def test_a_subroutine_returns_and_restores_its_arguments(tmp_path: Path) -> None:
    dp = dialplan(
        tmp_path,
        "[outer]\nexten => s,1,Gosub(inner,s,1(a))\n same => n,Verbose(1,back ${ARG1} ${ARGC})\n"
        " same => n,Return()\n"
        "[inner]\nexten => s,1,Verbose(1,in ${ARG1})\n same => n,Return()\n",
    )
    chan = subroutine(dp, "outer,s,1(x,y)")
    assert [e.data for e in chan.events if e.kind == "Verbose"] == ["in a", "back x 2"]
    assert chan.ended == "Return"


def test_what_is_not_modelled_is_refused_rather_than_guessed(tmp_path: Path) -> None:
    dp = dialplan(tmp_path, "[c]\nexten => 1,1,Verbose(1,${IF($[1]?a:b)})\n")
    with pytest.raises(NotImplementedError, match="function"):
        Channel(dp, "c", "1").run()
