// Words and times for people: instants in the reader's own zone, wall-clock times as the callee saw them.

const INSTANT = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  timeZoneName: 'short',
});
const TIME = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const DAY = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
const REGIONS = new Intl.DisplayNames(['en'], { type: 'region' });

/** An instant (ISO-8601 with offset) in the reader's zone: "23 Nov 2026, 16:00:00 UTC". */
export function instant(iso) {
  if (!iso) return '—';
  const t = Date.parse(iso);
  return Number.isNaN(t) ? String(iso) : INSTANT.format(t);
}

/** For a log row: the time of day, with the date when it is not today. */
export function logTime(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return String(iso ?? '—');
  const same = new Date(t).toDateString() === new Date().toDateString();
  return same ? TIME.format(t) : `${DAY.format(t)} ${TIME.format(t)}`;
}

const WALL = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?(Z|[+-]\d{2}:\d{2})?$/;
const WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** The wall-clock time written in an ISO string, as it was where it was written:
 *  "Monday 23 Nov 2026, 03:00 (UTC−05:00)". A callee's local time reads as the callee saw it. */
export function wall(iso) {
  const m = WALL.exec(iso ?? '');
  if (!m) return String(iso ?? '—');
  const [, y, mo, d, hh, mm, , off] = m;
  const weekday = WEEKDAYS[new Date(Date.UTC(+y, +mo - 1, +d)).getUTCDay()];
  const offset = !off || off === 'Z' || off === '+00:00' ? 'UTC' : `UTC${off.replace('-', '−')}`;
  return `${weekday} ${+d} ${MONTHS[+mo - 1]} ${y}, ${hh}:${mm} (${offset})`;
}

/** A length of time in seconds, as the rules state it: "24 hours", "30 days". */
export function period(seconds) {
  const s = Number(seconds);
  if (!Number.isFinite(s)) return String(seconds);
  if (s % 86400 === 0 && s > 86400) return `${s / 86400} days`;
  if (s % 3600 === 0) return s === 3600 ? '1 hour' : `${s / 3600} hours`;
  if (s >= 60) return `${Math.round(s / 60)} minutes`;
  return `${Math.round(s)} seconds`;
}

export function plural(n, one, many = `${one}s`) {
  return `${Number(n).toLocaleString()} ${n === 1 ? one : many}`;
}

export function region(code) {
  if (!code) return '';
  try {
    return REGIONS.of(code) ?? code;
  } catch {
    return code;
  }
}

/** An instant as the clock on the wall shows it in a zone: "Monday 08:00 in New York". */
export function inZone(iso, name) {
  const t = Date.parse(iso ?? '');
  if (Number.isNaN(t) || !name) return '';
  try {
    const local = new Intl.DateTimeFormat(undefined, {
      weekday: 'long', hour: '2-digit', minute: '2-digit', timeZone: name,
    }).format(t);
    return `${local} in ${String(name).split('/').pop().replaceAll('_', ' ')}`;
  } catch {
    return ''; // a zone this browser does not know
  }
}

/** "America/New_York" → "New York (America/New_York)". */
export function zone(name) {
  const city = String(name).split('/').pop().replaceAll('_', ' ');
  return city === name ? name : `${city} (${name})`;
}

export function lineType(type) {
  return {
    mobile: 'mobile', fixed_line: 'landline', fixed_line_or_mobile: 'landline or mobile',
    toll_free: 'toll-free', premium_rate: 'premium-rate', voip: 'VoIP',
  }[type] ?? String(type ?? 'unknown').replaceAll('_', ' ');
}

const LISTS = {
  internal: "the company's internal do-not-call list",
  us_national: 'the US National Do Not Call Registry',
  uk_tps: 'the UK Telephone Preference Service (TPS)',
  uk_ctps: 'the UK Corporate TPS',
};

/** A do-not-call list's name as a supervisor knows it. */
export function listName(name) {
  if (!name) return 'a do-not-call list';
  if (LISTS[name]) return LISTS[name];
  if (name.startsWith('campaign:')) return `the do-not-call list of campaign ${name.slice(9)}`;
  return `the list ${name}`;
}

/** A datetime-local input's value (the reader's zone) as ISO-8601 with an offset, or null. */
export function fromLocalInput(value) {
  if (!value) return null;
  const t = new Date(value);
  return Number.isNaN(t.getTime()) ? null : t.toISOString();
}

/** Whole days from a YYYY-MM-DD date to today, by the calendar (UTC, as the gate counts them). */
export function daysSince(day) {
  const t = Date.parse(`${day}T00:00:00Z`);
  if (Number.isNaN(t)) return null;
  const now = new Date();
  const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  return Math.round((today - t) / 86400000);
}
