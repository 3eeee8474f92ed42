"""FastAGI routes: turn a gate decision into channel variables. No rules are decided here.

``AGI(agi://GATE:4573/check,NUMBER,CAMPAIGN[,LEAD_STATE])``; NUMBER defaults to the extension dialled.
LEAD_STATE is read by the gate as every entry point reads it (``FL``, ``US-FL``, ``Florida``); one it
cannot read blocks the call with ``lead_state.invalid``, since no error can be returned to a dialplan.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from dialguard.asterisk.agi_protocol import CommandExchange
from dialguard.asterisk.agi_server import AgiSession, Handler
from dialguard.asterisk.call_routes import AnnounceRoute, CallRoutes, ConsentRoute, OptOutRoute
from dialguard.gate import CheckRequest, Gate, GateDecision

log = logging.getLogger(__name__)


class CheckRoute:
    """``check``: judge the call about to be dialled and tell the dialplan through DIALGUARD_* variables."""

    def __init__(self, *, gate: Gate) -> None:
        self.gate = gate

    async def __call__(self, session: AgiSession) -> None:
        args = session.request.args
        number = (args[0] if args else "").strip() or session.request.env.get("agi_extension", "")
        campaign = (args[1] if len(args) > 1 else "").strip() or None
        lead_state = (args[2] if len(args) > 2 else "").strip() or None
        sent: CommandExchange | None = None
        announced: GateDecision | None = None

        def announce(judged: GateDecision) -> None:
            # The six informational variables travel to Asterisk while the decision commits.
            nonlocal sent, announced
            sent = session.send_variables(_informational(judged))
            announced = judged

        result = await self.gate.check(
            CheckRequest(
                number=number, campaign=campaign, record=True, lead_subdivision=lead_state, channel="agi"
            ),
            announce=announce,
        )
        if sent is not None:
            await session.variables_set(sent)
        if result is not announced:  # not stored as judged (its insert failed, say): set them again
            await session.set_variables(_informational(result))
        # The verdict goes last, by a command of its own, once the decision is stored: a session cut
        # short leaves it empty, and the dialplan blocks on empty.
        await session.set_variable("DIALGUARD_VERDICT", str(result.verdict))


def _informational(result: GateDecision) -> dict[str, str]:
    """The channel variables but the verdict."""
    variables = result.channel_variables()
    del variables["DIALGUARD_VERDICT"]
    return variables


def agi_routes(*, gate: Gate, calls: CallRoutes | None = None) -> Mapping[str, Handler]:
    routes: dict[str, Handler] = {"check": CheckRoute(gate=gate)}
    if calls is not None:
        routes["announce"] = AnnounceRoute(calls=calls)
        routes["consent"] = ConsentRoute(calls=calls)
        routes["optout"] = OptOutRoute(calls=calls)
    return routes
