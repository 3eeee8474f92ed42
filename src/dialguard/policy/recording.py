"""May this answered call be recorded? Pure: the rules, and what happened during the notice."""

from __future__ import annotations

from dataclasses import dataclass

from dialguard.policy.model import Detail, EffectiveRules


@dataclass(frozen=True, slots=True)
class RecordingAnswer:
    allowed: bool
    detail: Detail


def recording_allowed(rules: EffectiveRules, *, notice_played: bool, objected: bool) -> RecordingAnswer:
    """Never after an objection (an opt-out); in all-party-consent places only after the notice played."""
    all_party = [(layer.key, src) for layer in rules.layers if (src := layer.all_party_consent) is not None]
    detail: Detail = {
        "all_party_consent": [key for key, _ in all_party],
        "sources": [src.as_detail() for _, src in all_party],
        "notice_played": notice_played,
        "objected": objected,
    }
    if objected:
        return RecordingAnswer(False, {**detail, "why": "the callee objected"})
    if all_party and not notice_played:
        return RecordingAnswer(
            False, {**detail, "why": "all-party consent and the notice did not play in full"}
        )
    return RecordingAnswer(True, detail)
