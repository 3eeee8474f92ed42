"""``EXEC MSet`` for the informational variables: our encoding against Asterisk's two parsers.

The fake (tests/fakes/asterisk_agi.py) ports res_agi.c ``parse_args`` and app.c
``__ast_app_separate_args`` as MSet (pbx_variables.c ``pbx_builtin_setvar_multiple``) uses them; the
first tests pin that port to what the C does, the rest hold our encoding to it.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialguard.asterisk.agi_protocol import encode_command, mset_data, mset_escape
from tests.fakes.asterisk_agi import mset, parse_args, separate_args


def exec_mset(variables: dict[str, str]) -> dict[str, str]:
    """What a channel holds after our ``EXEC MSet`` line went through Asterisk's parsing."""
    line = encode_command("EXEC", ["MSet", mset_data(variables)]).decode().rstrip("\n")
    argv = parse_args(line)
    assert argv[:2] == ["EXEC", "MSet"] and len(argv) == 3  # handle_exec passes argv[2] alone
    return dict(mset(argv[2]))


@pytest.mark.parametrize(
    ("buf", "expected"),
    [
        ("a,b", ["a", "b"]),
        ("a,", ["a", ""]),  # a trailing delimiter makes one more, empty argument
        ("a\\,b,c", ["a,b", "c"]),  # the backslash goes, the comma stays
        ('"a,b",c', ["a,b", "c"]),  # quotes group and go
        ("f(a,b),c", ["f(a,b)", "c"]),  # parentheses nest and stay
        ("x[1,2],y", ["x[1,2]", "y"]),
        ("(,a,b", ["(,a,b"]),  # an unbalanced one swallows every later delimiter
        ("\\(,a", ["(", "a"]),  # an escaped one does not count
        ("a\\\\,b", ["a\\", "b"]),
    ],
)
def test_the_fake_separates_arguments_as_app_c_does(buf: str, expected: list[str]) -> None:
    assert separate_args(buf, ",", remove_chars=True, arraylen=99) == expected


def test_mset_splits_a_pair_once_and_leaves_the_value_as_the_list_split_made_it() -> None:
    # AST_NONSTANDARD_APP_ARGS(pair, ..., '=') with two slots: the rest after the first '=' is raw.
    assert separate_args("X=a=b", "=", remove_chars=True, arraylen=2) == ["X", "a=b"]
    assert separate_args("X=a\\,b", "=", remove_chars=True, arraylen=2) == ["X", "a\\,b"]
    assert mset("A=1,B=x\\,y,C=,junk") == [("A", "1"), ("B", "x,y"), ("C", "")]


def test_without_mset_escaping_the_reasons_list_would_be_cut_at_its_first_comma() -> None:
    naive = encode_command("EXEC", ["MSet", "DIALGUARD_REASONS=dnc.clear,consent.valid"]).decode()
    assert dict(mset(parse_args(naive.rstrip("\n"))[2])) == {"DIALGUARD_REASONS": "dnc.clear"}
    reasons = "number.ok,dnc.internal,consent.missing,hours.within_window"
    assert exec_mset({"DIALGUARD_REASONS": reasons, "DIALGUARD_REASON": "dnc.internal"}) == {
        "DIALGUARD_REASONS": reasons,
        "DIALGUARD_REASON": "dnc.internal",
    }


@pytest.mark.parametrize(
    "value", ['say "hi"', "a\\b", "trailing\\", "(", ")", "[x", "]", "a=b", "x,y", "", " spaced ", '"']
)
def test_awkward_values_arrive_whole(value: str) -> None:
    variables = {"DIALGUARD_A": value, "DIALGUARD_B": "after"}
    assert exec_mset(variables) == variables


VALUES = st.text(
    alphabet=st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)), max_size=40
)


@given(
    st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,20}", fullmatch=True), VALUES, min_size=1, max_size=8)
)
def test_any_values_round_trip_through_agi_and_mset_parsing(variables: dict[str, str]) -> None:
    assert exec_mset(variables) == variables


def test_what_cannot_be_sent_is_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        mset_escape("a\0b")
    with pytest.raises(ValueError, match="name"):
        mset_data({"A,B": "x"})
    with pytest.raises(ValueError, match="line breaks"):
        encode_command("EXEC", ["MSet", mset_data({"A": "x\nHANGUP"})])
