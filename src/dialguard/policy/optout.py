"""What a pressed opt-out key does, as policy: the store applies it, the journal replays it."""

from __future__ import annotations

from dataclasses import dataclass

from dialguard.policy.model import INTERNAL


@dataclass(frozen=True, slots=True)
class OptOutEffects:
    lists: tuple[str, ...]  # the do-not-call lists the number goes on
    revokes_consent: bool  # every consent of the number is withdrawn from the moment of the press
    source: str


# The company-wide list (47 CFR 64.1200(d)(3): honour a do-not-call request; 16 CFR 310.4(b)(1)(iii)(A)),
# and consent withdrawn: a key press is a revocation "by any reasonable means" (47 CFR 64.1200(a)(10));
# GDPR Art. 7(3): withdrawing must be as easy as giving.
OPTOUT_EFFECTS = OptOutEffects(
    lists=(INTERNAL,),
    revokes_consent=True,
    source="47 CFR 64.1200(a)(10), (d)(3); 16 CFR 310.4(b)(1)(iii)(A); GDPR Art. 7(3)",
)
