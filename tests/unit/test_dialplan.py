"""asterisk-conf/extensions_dialguard.conf, loaded and run the way Asterisk would (tests/fakes/dialplan.py).

The gate's side is given by the channel variables its FastAGI routes set (DESIGN.md, Contracts);
tests/integration/test_dialplan_gate.py runs the same dialplan against the real gate.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dialplan_shipped import CONF, PHONES, ROOT, GateAnswers, installed
from tests.fakes.dialplan import Channel, Dialplan, call, find_extension

# Issue 10, item 13: the numbers that must never wait for the gate, as dialled.
EMERGENCY = [
    "911", "933",  # NANP: emergency, and the 911 address test
    "112",  # everywhere
    "999",  # GB (and PL ambulance)
    "997", "998",  # PL police, fire service
    "101", "102", "103",  # RU fire service, police, ambulance
    "110", "119", "120", "122",  # CN police, fire service, ambulance, traffic accidents
]  # fmt: skip
ORDINARY = [
    "2025550143",  # US national
    "12025550143",
    "912025550143",  # with the outside-line 9
    "+48601234567",
    "0048601234567",
    "90048601234567",
    "011441632960961",
    "9112345678",  # starts like 911 and 9112, but is longer: a number like any other
    "1121234567",
    "9990000000",
]
ALLOW_US = {
    "DIALGUARD_REASON": "ok",
    "DIALGUARD_REASONS": "number.ok,dnc.clear,consent.valid",
    "DIALGUARD_CALL_ID": "6f1c2a8e-0000-4000-8000-000000000001",
    "DIALGUARD_NUMBER": "+12025550143",
    "DIALGUARD_LANG": "en",
    "DIALGUARD_VERDICT": "ALLOW",
}
CALL_ID = ALLOW_US["DIALGUARD_CALL_ID"]


@pytest.fixture(scope="module")
def dp(tmp_path_factory: pytest.TempPathFactory) -> Dialplan:
    return installed(tmp_path_factory.mktemp("asterisk"))


def emergency_dial(dp: Dialplan, digits: str) -> str:
    g = dp.globals
    return f"{g['DIALGUARD_EMERGENCY_DIAL_PREFIX']}{digits}{g['DIALGUARD_EMERGENCY_DIAL_SUFFIX']}"


def kinds(chan: Channel) -> list[str]:
    return [e.kind for e in chan.events]


def said(chan: Channel) -> list[str]:
    return [e.data for e in chan.events if e.kind == "Verbose"]


# ------------------------------------------------------------------ item 13: emergency calls


@pytest.mark.parametrize("number", EMERGENCY)
def test_an_emergency_number_is_dialled_before_any_check(dp: Dialplan, number: str) -> None:
    gate = GateAnswers(check={"DIALGUARD_VERDICT": "BLOCK", "DIALGUARD_REASON": "number.invalid"})
    chan = call(dp, PHONES, number, agi=gate)
    assert gate.sessions == []
    dials = [e.data for e in chan.events if e.kind == "Dial"]
    assert dials == [emergency_dial(dp, number)]  # no timeout, no U(): nothing else on the call
    assert chan.ended == "Bridged"


@pytest.mark.parametrize("number", EMERGENCY)
def test_with_the_outside_line_9_an_emergency_number_is_dialled_without_the_9(
    dp: Dialplan, number: str
) -> None:
    gate = GateAnswers()
    chan = call(dp, PHONES, "9" + number, agi=gate)
    assert gate.sessions == []
    assert [e.data for e in chan.events if e.kind == "Dial"] == [emergency_dial(dp, number)]


def test_an_emergency_number_is_found_in_dialguard_emergency_not_in_the_checked_patterns(
    dp: Dialplan,
) -> None:
    found = find_extension(dp, PHONES, "911")
    assert found is not None and found.context == "dialguard-emergency"
    assert found.extension.name == "911"  # an exact extension, not a pattern that could take more


def test_if_the_emergency_route_is_unavailable_the_ordinary_one_is_tried(dp: Dialplan) -> None:
    tried: list[str] = []

    def trunks(dialstring: str, chan: Channel) -> str:
        tried.append(dialstring)
        return "CHANUNAVAIL" if len(tried) == 1 else "ANSWER"

    chan = call(dp, PHONES, "112", dial=trunks)
    g = dp.globals
    assert tried == [
        emergency_dial(dp, "112"),
        f"{g['DIALGUARD_DIAL_PREFIX']}112{g['DIALGUARD_DIAL_SUFFIX']}",
    ]
    assert chan.ended == "Bridged"


@pytest.mark.parametrize("number", ORDINARY)
def test_an_ordinary_number_reaches_the_check_before_any_dial(dp: Dialplan, number: str) -> None:
    gate = GateAnswers()  # unreachable: the call must stop there
    chan = call(dp, PHONES, number, agi=gate)
    assert gate.sessions == [("check", [number, dp.globals["DIALGUARD_CAMPAIGN"]])]
    assert "Dial" not in kinds(chan)
    assert chan.ended == "Hangup(21)"


# ------------------------------------------------------------------ the checked call (items 16, 18)


def test_an_allowed_call_is_dialled_with_the_notice_armed_on_answer(dp: Dialplan) -> None:
    gate = GateAnswers(check=ALLOW_US, announce={"DIALGUARD_RECORD": "NO", "DIALGUARD_ANNOUNCE": "OK"})
    chan = call(dp, PHONES, "2025550143", agi=gate)
    g = dp.globals
    assert [e.data for e in chan.events if e.kind == "Dial"] == [
        f"{g['DIALGUARD_DIAL_PREFIX']}+12025550143{g['DIALGUARD_DIAL_SUFFIX']},60,"
        f"U(dialguard-answer^{CALL_ID}^+12025550143^default)"
    ]
    assert gate.sessions[1] == ("announce", [CALL_ID, "+12025550143", "default"])
    assert chan.ended == "Bridged"


def test_a_blocked_call_says_why_and_is_rejected(dp: Dialplan) -> None:
    gate = GateAnswers(
        check={
            "DIALGUARD_REASON": "hours.outside_window",
            "DIALGUARD_REASONS": "number.ok,hours.outside_window",
            "DIALGUARD_CALL_ID": CALL_ID,
            "DIALGUARD_NEXT_CALLABLE": "2026-11-24T08:00:00-05:00",
            "DIALGUARD_VERDICT": "BLOCK",
        }
    )
    chan = call(dp, PHONES, "2025550143", agi=gate)
    assert said(chan) == [
        f"dialguard: BLOCK hours.outside_window [number.ok,hours.outside_window] call {CALL_ID}",
        "dialguard: callable again at 2026-11-24T08:00:00-05:00",
    ]
    assert "Dial" not in kinds(chan)
    assert chan.ended == "Hangup(21)"


def test_an_unreachable_gate_is_logged_as_such_and_the_call_rejected(dp: Dialplan) -> None:
    chan = call(dp, PHONES, "2025550143", agi=GateAnswers())
    assert said(chan) == ["dialguard: gate unreachable (AGISTATUS=FAILURE) - call to 2025550143 rejected"]
    assert chan.ended == "Hangup(21)"


def test_no_semicolon_cuts_an_application_line_short(dp: Dialplan) -> None:
    # A ';' inside App(...) starts a comment: Asterisk warns "No closing parenthesis found?" and runs
    # the application with its arguments cut; an escaped '\;' would reach it whole.
    assert dp.warnings == []
    for entry in dp.priorities():
        assert _balanced(entry.data), f"{entry.file}:{entry.lineno}: {entry.app}({entry.data}"


def _balanced(data: str) -> bool:
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for c in data:
        if c in "([{":
            stack.append(c)
        elif c in pairs and (not stack or stack.pop() != pairs[c]):
            return False
    return not stack


def test_every_line_of_the_file_loads(dp: Dialplan) -> None:
    # Nothing silently dropped: each exten/same line became exactly one priority.
    lines = [
        n
        for n, line in enumerate(CONF.read_text().splitlines(), start=1)
        if re.match(r"\s*(exten|same)\s*=>", line)
    ]
    assert sorted(e.lineno for e in dp.priorities() if e.file == str(CONF)) == lines


# ------------------------------------------------------------------ item 14: the call at answer


def answer(dp: Dialplan, gate: GateAnswers, call_id: str = CALL_ID) -> Channel:
    """The checked call, allowed, answered: U(dialguard-answer^...) runs on the callee."""
    gate.check = {**ALLOW_US, "DIALGUARD_CALL_ID": call_id}
    return call(dp, PHONES, "2025550143", agi=gate)


def test_a_call_without_a_call_id_is_hung_up_at_answer_before_the_gate_is_asked(dp: Dialplan) -> None:
    gate = GateAnswers(announce={"DIALGUARD_ANNOUNCE": "OK"})
    chan = answer(dp, gate, call_id="")
    assert [route for route, _ in gate.sessions] == ["check"]  # no announce session
    assert chan.ended == "Aborted"
    assert chan.callee is not None
    assert said(chan.callee) == ["dialguard: answered call without a call id - hanging up"]


def test_a_call_the_gate_refuses_at_answer_is_hung_up_with_the_reason(dp: Dialplan) -> None:
    gate = GateAnswers(announce={"DIALGUARD_ANNOUNCE": "REFUSED", "DIALGUARD_REFUSED_REASON": "call.unknown"})
    chan = answer(dp, gate)
    assert chan.ended == "Aborted"
    assert chan.callee is not None
    assert said(chan.callee) == [
        f"dialguard: gate refused call {CALL_ID} at answer (call.unknown) - hanging up"
    ]
    assert "MixMonitor" not in kinds(chan.callee)


def test_an_unreachable_gate_at_answer_lets_the_call_go_on_unrecorded_and_says_so(dp: Dialplan) -> None:
    chan = answer(dp, GateAnswers(announce=None))
    assert chan.ended == "Bridged"
    assert chan.callee is not None
    assert said(chan.callee) == [
        f"dialguard: gate unreachable at answer (AGISTATUS=FAILURE) - call {CALL_ID} goes on without "
        "the notice and without recording"
    ]
    assert "MixMonitor" not in kinds(chan.callee)


def test_a_call_the_gate_lets_record_is_recorded(dp: Dialplan) -> None:
    chan = answer(dp, GateAnswers(announce={"DIALGUARD_RECORD": "YES", "DIALGUARD_ANNOUNCE": "OK"}))
    assert chan.ended == "Bridged"
    assert chan.callee is not None
    assert [e.data for e in chan.callee.events if e.kind == "MixMonitor"] == [f"dialguard-{CALL_ID}.wav"]


def test_an_opt_out_ends_the_call(dp: Dialplan) -> None:
    chan = answer(dp, GateAnswers(announce={"DIALGUARD_OPTOUT": "1", "DIALGUARD_ANNOUNCE": "OK"}))
    assert chan.ended == "Aborted"
    assert chan.callee is not None
    assert said(chan.callee) == [f"dialguard: opt-out on call {CALL_ID} - hanging up"]


ORIGINATED = {
    "DIALGUARD_CALL_ID": CALL_ID,
    "DIALGUARD_NUMBER": "+12025550143",
    "DIALGUARD_CAMPAIGN": "spring",
}


def originate(dp: Dialplan, gate: GateAnswers, **variables: str) -> Channel:
    return call(dp, "dialguard-originate", "s", variables={**ORIGINATED, **variables}, agi=gate)


def test_an_originated_call_without_a_call_id_ends_before_the_gate_is_asked(dp: Dialplan) -> None:
    gate = GateAnswers(announce={"DIALGUARD_ANNOUNCE": "OK"})
    chan = originate(dp, gate, DIALGUARD_CALL_ID="")
    assert gate.sessions == []
    assert said(chan) == [
        "dialguard: originated call without DIALGUARD_CALL_ID - hanging up (check the number first)"
    ]
    assert chan.ended == "Hangup()"


@pytest.mark.parametrize(
    "announce",
    [
        {"DIALGUARD_ANNOUNCE": "REFUSED", "DIALGUARD_REFUSED_REASON": "call.unknown"},
        {"DIALGUARD_OPTOUT": "1", "DIALGUARD_ANNOUNCE": "OK"},
    ],
)
def test_an_originated_call_refused_or_opted_out_never_reaches_an_agent(
    dp: Dialplan, announce: dict[str, str]
) -> None:
    gate = GateAnswers(announce=announce)
    chan = originate(dp, gate)
    assert gate.sessions == [("announce", [CALL_ID, "+12025550143", "spring"])]
    assert chan.ended == "Hangup()"
    assert chan.context == "dialguard-originate"


def test_an_agent_first_call_is_put_through_at_once_with_the_opt_out_key_armed(dp: Dialplan) -> None:
    gate = GateAnswers(announce={"DIALGUARD_ANNOUNCE": "OK"})
    dialled: list[str] = []

    def agent(dialstring: str, chan: Channel) -> str:
        dialled.append(dialstring)
        return "ANSWER"

    chan = call(
        dp, "dialguard-originate", "s", variables={**ORIGINATED, "DIALGUARD_ANSWER_PATH": "agent_first"},
        agi=gate, dial=agent,
    )  # fmt: skip
    assert gate.sessions == []  # no notice before the agent: the 2-second rule
    assert dialled == [dp.globals["DIALGUARD_AGENT_DIAL"]]
    assert chan.variables["DYNAMIC_FEATURES"] == "dialguard-optout"
    dial = next(e for e in chan.events if e.kind == "Dial")
    assert dial.data == f"{dp.globals['DIALGUARD_AGENT_DIAL']},{dp.globals['DIALGUARD_AGENT_WAIT']}"
    assert chan.ended == "Bridged"


def test_an_agent_first_call_no_agent_takes_gets_the_abandonment_message(dp: Dialplan) -> None:
    variables = {
        **ORIGINATED, "DIALGUARD_ANSWER_PATH": "agent_first",
        "DIALGUARD_ABANDON_PROMPT": "dialguard/en/dialguard-abandoned",
        "DIALGUARD_CALLBACK_PROMPT": "dialguard/en/dialguard-callback", "DIALGUARD_CALLBACK": "18005550100",
    }  # fmt: skip
    chan = call(dp, "dialguard-originate", "s", variables=variables, dial=lambda d, c: "NOANSWER")
    told = [(e.kind, e.data) for e in chan.events if e.kind in ("UserEvent", "Playback", "SayDigits")]
    assert told == [
        ("UserEvent", f"DialguardAbandoned,CallID: {CALL_ID}"),
        ("Playback", "dialguard/en/dialguard-abandoned"),
        ("Playback", "dialguard/en/dialguard-callback"),
        ("SayDigits", "18005550100"),
    ]
    assert chan.ended == "Hangup()"


def test_the_opt_out_key_during_the_call_asks_the_gate_and_ends_the_call(dp: Dialplan) -> None:
    gate = GateAnswers()
    chan = call(dp, "dialguard-optout-key", "s", variables=ORIGINATED, agi=gate)
    assert gate.sessions == [("optout", [CALL_ID, "+12025550143", "spring"])]
    assert chan.ended == "Hangup()"  # even with the gate unreachable: the callee asked to stop


def test_the_features_file_arms_the_key_the_dialplan_names(dp: Dialplan) -> None:
    features = (ROOT / "asterisk-conf" / "features_dialguard.conf").read_text()
    (line,) = [x for x in features.splitlines() if x.startswith("dialguard-optout =>")]
    key, activate_on, app = (part.strip() for part in line.split("=>", 1)[1].split(",", 2))
    assert (key, activate_on, app) == ("9", "self", "Gosub(dialguard-optout-key,s,1)")
    assert "dialguard-optout-key" in dp.contexts


@pytest.mark.parametrize("announce", [{"DIALGUARD_ANNOUNCE": "OK"}, None])
def test_an_originated_call_announced_or_with_the_gate_away_goes_to_the_agents(
    dp: Dialplan, announce: dict[str, str] | None
) -> None:
    chan = originate(dp, GateAnswers(announce=announce))
    assert chan.context == dp.globals["DIALGUARD_AGENT_CONTEXT"]
    assert chan.ended == "Fallthrough"  # the agents' context is the site's own, not in this file


# ------------------------------------------------------------------ item 18: modules and dial strings

# Where each application and function the file may use lives (Asterisk's source tree). None: the core
# (main/pbx_builtins.c, main/pbx_variables.c). An application not listed here fails the test: add it,
# with its module, to this map, to docs/asterisk.md and to the file's header.
MODULE_OF_APP: dict[str, str | None] = {
    "AGI": "res_agi",  # res/res_agi.c (.requires = "res_speech")
    "Dial": "app_dial",  # apps/app_dial.c
    "Gosub": "app_stack",  # apps/app_stack.c
    "Return": "app_stack",
    "ExecIf": "app_exec",  # apps/app_exec.c
    "Verbose": "app_verbose",  # apps/app_verbose.c
    "MixMonitor": "app_mixmonitor",  # apps/app_mixmonitor.c
    "Playback": "app_playback",  # apps/app_playback.c
    "UserEvent": "app_userevent",  # apps/app_userevent.c
    "SayDigits": None,  # main/pbx_builtins.c
    "Set": None,  # main/pbx_variables.c
    "Goto": None,  # main/pbx_builtins.c
    "GotoIf": None,
    "NoOp": None,
    "Hangup": None,
}
MODULE_OF_FUNCTION = {
    "IF": "func_logic",
    "ISNULL": "func_logic",
    "EXISTS": "func_logic",
    "LEN": "func_strings",
    "FILTER": "func_strings",
    "REPLACE": "func_strings",
    "STRREPLACE": "func_strings",
    "CUT": "func_cut",
    "CALLERID": "func_callerid",
    "CHANNEL": "func_channel",
}
MODULE_OF_TECHNOLOGY = {
    "PJSIP": "chan_pjsip", "SIP": "chan_sip", "IAX2": "chan_iax2", "DAHDI": "chan_dahdi",
    "Local": None,  # main/core_local.c: built in
}  # fmt: skip
ALWAYS = {
    "pbx_config",  # loads extensions.conf
    "res_speech",  # res_agi requires it
    "app_stack",  # Dial's U() runs the answer subroutine through it (main/app.c, ast_app_exec_sub)
    "res_pjsip",  # chan_pjsip requires res_pjsip, res_pjsip_session, res_pjsip_pubsub
    "res_pjsip_session",
    "res_pjsip_pubsub",
    "bridge_simple",  # joins the two parties after Dial answers
    "format_wav",  # the prompts and MixMonitor's files are .wav
}


def modules_needed(dp: Dialplan) -> set[str]:
    needed = set(ALWAYS)
    for entry in dp.priorities():
        if entry.file != str(CONF):
            continue
        assert entry.app in MODULE_OF_APP, f"{entry.app} at line {entry.lineno}: which module is it in?"
        needed |= {m for m in [MODULE_OF_APP[entry.app]] if m}
        for inner in re.findall(r"\?(\w+)\(", entry.data) if entry.app == "ExecIf" else []:
            assert inner in MODULE_OF_APP, f"{inner} (ExecIf) at line {entry.lineno}: which module?"
            needed |= {m for m in [MODULE_OF_APP[inner]] if m}
        for function in re.findall(r"\$\{(\w+)\(", entry.data):
            assert function in MODULE_OF_FUNCTION, f"${{{function}(...)}} at line {entry.lineno}: module?"
            needed.add(MODULE_OF_FUNCTION[function])
    for value in dp.globals.values():
        if (m := re.match(r"(\w+)/", value)) and (module := MODULE_OF_TECHNOLOGY[m.group(1)]):
            needed.add(module)
    return needed


def documented_modules(text: str) -> set[str]:
    return set(re.findall(r"\b((?:app|res|chan|func|pbx|bridge|format|codec)_\w+)\.so\b", text))


def docs_module_section() -> str:
    text = (ROOT / "docs" / "asterisk.md").read_text()
    m = re.search(r"^## Modules.*?(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert m, "docs/asterisk.md has no '## Modules' section"
    return m.group(0)


def conf_header() -> str:
    return "".join(_header_lines())


def _header_lines() -> Iterator[str]:
    for line in CONF.read_text().splitlines(keepends=True):
        if line.startswith("["):
            return
        yield line


def test_every_module_the_file_uses_is_in_the_docs_and_in_the_file_header(dp: Dialplan) -> None:
    needed = modules_needed(dp)
    assert {"res_agi", "app_dial", "app_stack", "app_exec", "app_verbose", "app_mixmonitor"} <= needed
    assert needed - documented_modules(docs_module_section()) == set()
    assert needed - documented_modules(conf_header()) == set()


def test_the_header_lists_the_modules_as_modules_conf_lines() -> None:
    loads = re.findall(r"^;\s*load => (\w+)\.so", conf_header(), re.MULTILINE)
    assert set(loads) == documented_modules(conf_header())


def test_no_application_names_a_channel_technology_of_its_own(dp: Dialplan) -> None:
    for entry in dp.priorities():
        assert not re.search(r"(?<![$\w{])(PJSIP|SIP|IAX2|DAHDI|Local)/", entry.data), (
            f"line {entry.lineno}: {entry.app}({entry.data}): the dial string belongs in [globals]"
        )


def test_a_site_on_another_channel_driver_edits_globals_only(tmp_path: Path) -> None:
    text = CONF.read_text()
    edited = re.sub(r"^(DIALGUARD_(?:EMERGENCY_)?DIAL_PREFIX)=\S*", r"\1=SIP/my-trunk/", text, flags=re.M)
    edited = re.sub(r"^(DIALGUARD_(?:EMERGENCY_)?DIAL_SUFFIX)=\S*", r"\1=", edited, flags=re.M)
    assert edited.split("\n[dialguard-outbound]")[1] == text.split("\n[dialguard-outbound]")[1]
    (tmp_path / "extensions_dialguard.conf").write_text(edited)
    site = installed(tmp_path, tmp_path / "extensions_dialguard.conf")
    allowed = call(site, PHONES, "2025550143", agi=GateAnswers(check=ALLOW_US, announce={}))
    emergency = call(site, PHONES, "911")
    assert [e.data.split(",")[0] for e in allowed.events if e.kind == "Dial"] == ["SIP/my-trunk/+12025550143"]
    assert [e.data for e in emergency.events if e.kind == "Dial"] == ["SIP/my-trunk/911"]
