"""How long an established business relationship lets a seller call: the policy's, read by the store
when such a grant is recorded."""

from __future__ import annotations

import calendar
from datetime import datetime

# 18 months after a purchase, 3 after an inquiry (16 CFR 310.2(q)); the grant's date is the purchase or
# inquiry date.
EBR_MONTHS = {"ebr_purchase": 18, "ebr_inquiry": 3}


def add_months(moment: datetime, months: int) -> datetime:
    """The same day ``months`` later, or the month's last day when it is shorter (31 Aug + 3 = 30 Nov)."""
    month0 = moment.month - 1 + months
    year, month = moment.year + month0 // 12, month0 % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def relationship_ends(kind: str, granted_at: datetime) -> datetime | None:
    """When a business relationship of this kind lapses; None for any other kind of consent."""
    months = EBR_MONTHS.get(kind)
    return add_months(granted_at, months) if months else None
