"""The policy's vocabulary: facts in, rules in, a decision out. Plain frozen data, no I/O.

A decision is a value, never an exception: every check returns a :class:`Reason`, passed or failed,
with its evidence, and the engine folds them into a :class:`Decision`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import TypeAlias

from dialguard.numbers import EmergencyNumber, InvalidNumber, NumberFacts

# Sequence and Mapping (not list and dict) so that a list[str] is a JsonValue too: they are covariant.
JsonValue: TypeAlias = str | int | float | bool | Sequence["JsonValue"] | Mapping[str, "JsonValue"] | None
Detail: TypeAlias = dict[str, JsonValue]


class Verdict(StrEnum):
    ALLOW = "ALLOW"
    BLOCK = "BLOCK"


class Purpose(StrEnum):
    MARKETING = "marketing"
    INFORMATIONAL = "informational"
    DEBT_COLLECTION = "debt_collection"
    SURVEY = "survey"


@dataclass(frozen=True, slots=True)
class Reason:
    """One check's outcome: a stable code, whether it passed, and the evidence behind it."""

    code: str
    passed: bool
    detail: Detail = field(default_factory=dict)
    # When a failed check can be cured by waiting (hours, holidays, caps): the earliest instant
    # this check alone would pass. The engine intersects these into the decision's next_callable_at.
    retry_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reasons: tuple[Reason, ...]
    next_callable_at: datetime | None = None

    @property
    def reason(self) -> str:
        """The first failed code, or ``ok``: what DIALGUARD_REASON carries."""
        for r in self.reasons:
            if not r.passed:
                return r.code
        return "ok"

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)


# ---------------------------------------------------------------- facts


@dataclass(frozen=True, slots=True)
class Campaign:
    name: str
    purpose: Purpose
    # Per-campaign extras the rule packs may consult; unknown keys are ignored by the policy.
    settings: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """A consent grant as it stands now (the ledger's history is folded by the store)."""

    id: int
    kind: str  # e.g. "express", "express_written", "written_agreement", "ebr_purchase", "ebr_inquiry"
    source: str  # web_form, call, paper, import, api, dtmf ...
    granted_at: datetime
    purpose: Purpose | None = None  # scope by purpose ...
    campaign: str | None = None  # ... or by campaign
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


INTERNAL = "internal"  # the company-wide do-not-call list


def is_company_list(name: str) -> bool:
    """The company's own lists (internal, campaign:NAME) hold entries added one by one and always bind;
    every other name is a national list, loaded whole."""
    return name == INTERNAL or name.startswith("campaign:")


@dataclass(frozen=True, slots=True)
class DncHit:
    """A do-not-call entry that matches the number."""

    list_name: str  # "internal", "us_national", "uk_tps", "campaign:<name>" ...
    source: str
    added_at: datetime
    entry_id: int | None = None
    prefix: str | None = None  # set when a wildcard prefix matched, not the number itself
    list_version: date | None = None


@dataclass(frozen=True, slots=True)
class RegistryStatus:
    """A national list's live version, and whether this number is on it."""

    list_name: str  # "us_national", "uk_tps" ...
    list_date: date  # the publisher's date of the data: freshness is measured from it
    version_id: int
    hit: bool


@dataclass(frozen=True, slots=True)
class Emergency:
    """A declared emergency in force for the number's area codes (or its whole area)."""

    id: int
    area: str  # a subdivision, "US-NY"
    reason: str
    ends_at: datetime


@dataclass(frozen=True, slots=True)
class Attempt:
    """A call to this number the gate let through earlier (counted for frequency caps)."""

    at: datetime
    campaign: str
    purpose: Purpose


@dataclass(frozen=True, slots=True)
class RoamingFact:
    """What an HLR said (or could not say) about a mobile number."""

    status: str  # "home", "abroad", "unknown"
    visited_country: str | None = None
    provider: str | None = None
    age_seconds: float | None = None
    cause: str | None = None  # why unknown: "timeout", "http_500", "breaker_open" ...
    visited_zones: tuple[str, ...] = ()  # the visited country's time zones, when abroad


@dataclass(frozen=True, slots=True)
class AnswerCounts:
    """A campaign's calls answered by a person, and how many of them were abandoned, over a window.

    Counted from hourly rows: ``abandoned`` from every hour that touches the window, ``answered`` only from
    the hours wholly after its start, so the rate read is never below the true one (store/abandons.py).
    """

    answered: int
    abandoned: int
    since: datetime  # the window's start
    until: datetime  # its end: the instant judged


@dataclass(frozen=True, slots=True)
class AbandonedCall:
    """An answered call no agent reached in time: the number may not be called again for a while (GB)."""

    call_id: str
    campaign: str
    answered_at: datetime


@dataclass(frozen=True, slots=True)
class CallFacts:
    """Everything the policy may know about one call. Gathered by the gate, judged by the engine."""

    raw_number: str
    number: NumberFacts | InvalidNumber | EmergencyNumber
    campaign_name: str
    campaign: Campaign | None  # None: no such campaign
    now: datetime  # timezone-aware
    dnc_hits: tuple[DncHit, ...] = ()
    consents: tuple[ConsentRecord, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    lead_subdivision: str | None = None  # "US-TX" when the dialer knows the lead's own state
    roaming: RoamingFact | None = None
    registries: tuple[RegistryStatus, ...] = ()  # every loaded national list, hit or not
    emergencies: tuple[Emergency, ...] = ()  # declared, in force now, covering the number's prefixes
    # Read only when the callee's rules have an abandoned-call rule (policy/abandon.py):
    campaign_answers: AnswerCounts | None = None  # the campaign's answered calls over the rule's window
    last_abandoned: AbandonedCall | None = None  # the number's latest abandoned call inside the repeat block


# ---------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class Source:
    """Where a rule comes from: a legal citation with the days it is in force, or company policy.

    ``effective`` and ``until`` are conditions, not labels: the rule applies from its first day to its last
    (both included; None leaves that end open), judged by the callee's local date (see policy/rulebook.py).
    """

    citation: str
    effective: date | None = None  # first day in force
    policy: bool = False  # True: a rule we chose, not one the law imposes
    until: date | None = None  # last day in force

    def in_force_on(self, day: date) -> bool:
        return (self.effective is None or self.effective <= day) and (self.until is None or day <= self.until)

    def as_detail(self) -> Detail:
        return {
            "citation": self.citation,
            "effective": self.effective.isoformat() if self.effective else None,
            "until": self.until.isoformat() if self.until else None,
            "policy": self.policy,
        }


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A local-time window, start inclusive, end exclusive; end == 24:00 is written as time.max."""

    start: time
    end: time

    def contains(self, t: time) -> bool:
        return self.start <= t < self.end or (self.end == time.max and t >= self.start)

    def label(self) -> str:
        end = "24:00" if self.end == time.max else f"{self.end:%H:%M}"
        return f"{self.start:%H:%M}-{end}"


NO_CALLS: tuple[TimeWindow, ...] = ()


@dataclass(frozen=True, slots=True)
class CallingHours:
    """When calls are allowed, per weekday (0 = Monday) and on holidays, in the callee's local time."""

    weekdays: Mapping[int, tuple[TimeWindow, ...]]  # a missing weekday: no calls that day
    source: Source
    holidays: tuple[TimeWindow, ...] | None = None  # None: holidays are ordinary days
    holiday_country: str | None = None  # the `holidays` package calendar, e.g. "US"
    holiday_subdivision: str | None = None  # e.g. "LA"
    extra_holidays: frozenset[date] = frozenset()
    moving_holidays: frozenset[str] = frozenset()  # by name, e.g. "mardi_gras" (policy/hours.py)

    def windows_on(self, day: date, is_holiday: bool) -> tuple[TimeWindow, ...]:
        if is_holiday and self.holidays is not None:
            return self.holidays
        return self.weekdays.get(day.weekday(), NO_CALLS)


@dataclass(frozen=True, slots=True)
class ConsentRule:
    """Whether a purpose needs consent, and which kinds of consent count."""

    purpose: Purpose
    required: bool
    source: Source
    kinds: frozenset[str] = frozenset()  # empty: any kind counts


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    max_calls: int
    period: timedelta
    source: Source
    purposes: frozenset[Purpose] = frozenset()  # empty: every purpose
    per_campaign: bool = False  # count only this campaign's attempts (e.g. Reg F, per debt)


@dataclass(frozen=True, slots=True)
class ListRule:
    """A national do-not-call list a pack requires: for which purposes, how fresh, who may still call."""

    list_name: str
    source: Source
    required: bool = True  # a missing or stale copy blocks (an old list is no list)
    max_age_days: int | None = None  # stale from this age of the data on
    purposes: frozenset[Purpose] = frozenset()  # empty: every purpose
    exempt_kinds: frozenset[str] = frozenset()  # consent kinds that may call a listed number anyway
    entry_lifetime_days: int | None = None  # a registration lapses after this long (Texas: 3 years)


@dataclass(frozen=True, slots=True)
class EmergencyRule:
    """No calls of these purposes into the layer's area while a declared emergency is in force there."""

    purposes: frozenset[Purpose]
    source: Source


@dataclass(frozen=True, slots=True)
class RoamingRule:
    """When a pack asks whether a mobile is abroad, and what an unanswered question means."""

    required_for: frozenset[Purpose]
    block_unknown: bool  # True where the rule is law: no answer, no call
    source: Source


@dataclass(frozen=True, slots=True)
class AbandonRule:
    """The abandoned-call limit a campaign's answered calls are held to (policy/abandon.py).

    ``agent_within`` and ``min_ring_seconds`` say what counts as abandoned and how long to ring: the
    dialplan and the call log apply them; the policy shows them as evidence. ``min_answered`` is the
    sample below which the rate is measured against that many answered calls (the cold start).
    """

    max_rate: Fraction  # exact: 3/100, so the boundary "at the limit" is exact too
    window: timedelta
    agent_within: timedelta
    min_ring_seconds: int
    min_answered: int
    source: Source
    repeat_block: timedelta | None = None  # no repeat call to an abandoned number within this (GB: 72 h)
    purposes: frozenset[Purpose] = frozenset()  # empty: every purpose


@dataclass(frozen=True, slots=True)
class RuleLayer:
    """One level of rules: a country, a subdivision inside it, or the administrator's overrides.

    A call must satisfy every layer that applies to it; that is how "the stricter wins".

    A layer whose entries carry dates is cut by the loader into periods at those dates (policy/rulebook.py,
    ``dated_layer``): one RuleLayer per period, holding the entries in force throughout it, with the days it
    covers (``since``..``until``). The rule book names the newest period; the earlier ones hang from it
    (``earlier``). The policy keeps the periods in force on the day it judges: two date comparisons per
    layer, nothing rebuilt per call. A question asked without an instant sees every period, so it errs on
    the strict side (a recording notice, an HLR look-up, how far back caps count).
    """

    key: str  # "US", "US-FL", "config"
    calling_hours: CallingHours | None = None
    consent: Mapping[Purpose, ConsentRule] = field(default_factory=dict)
    frequency_caps: tuple[FrequencyCap, ...] = ()
    dnc_lists: tuple[ListRule, ...] = ()
    roaming: RoamingRule | None = None
    emergency: EmergencyRule | None = None
    abandon: AbandonRule | None = None
    # Every party must consent to a recording (all-party states): record only after the notice, unobjected.
    all_party_consent: Source | None = None
    # When the number gives no usable zone, or zones that share no window: which zones to presume, and why.
    presumed_zones: tuple[str, ...] = ()
    presumption: str | None = None
    since: date | None = None  # the first day of this period (None: from the beginning)
    until: date | None = None  # its last day (None: open-ended)
    earlier: tuple[RuleLayer, ...] = ()  # the layer's earlier periods, oldest first (on the newest only)

    def in_force_on(self, day: date) -> bool:
        return (self.since is None or self.since <= day) and (self.until is None or day <= self.until)

    def periods(self) -> tuple[RuleLayer, ...]:
        """Every period of the layer, oldest first (an undated layer is its own single period)."""
        return (*self.earlier, self)


@dataclass(frozen=True, slots=True)
class EffectiveRules:
    """The layers that apply to one number, the zones it may be in, and the version hash."""

    layers: tuple[RuleLayer, ...]
    zones: tuple[str, ...]
    version: str
    zone_note: str | None = None  # how the zones were chosen when the number alone did not say
    # Where the candidate zones share no calling window at all (a wide country's mobile range): the zones
    # to judge by instead — the lead's own state when the dialer gave one, else the pack's presumption.
    fallback_zones: tuple[str, ...] = ()
    fallback_note: str | None = None
