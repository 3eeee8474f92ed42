"""What an originated call does when the callee answers. Pure.

Where a 2-second rule governs abandoned calls (the TSR, 16 CFR 310.4(b)(1)(iv); Ofcom's persistent-misuse
policy), a notice played before the agent makes the call abandoned: the callee goes to an agent at once
(``agent_first``). Elsewhere the notice plays first (``notice_first``). A campaign may choose either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dialguard.policy.campaign_settings import usable


def answer_path(settings: Mapping[str, Any], *, two_second_rule: bool) -> str:
    chosen = usable(settings, "answer_path")
    if chosen is not None:
        return str(chosen)
    return "agent_first" if two_second_rule else "notice_first"
