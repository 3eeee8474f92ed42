// A reason's evidence in words a supervisor reads: one small formatter per family of reason codes.
// Each returns sentences; a detail key it does not know stays visible in the raw evidence below it.

import { inZone, instant, lineType, listName, period, plural, region, wall, zone } from './format.js';

export const CODES = [
  'number.ok', 'number.invalid', 'number.emergency',
  'dnc.internal', 'dnc.prefix', 'dnc.us_national', 'dnc.uk_tps', 'dnc.list_stale', 'dnc.clear',
  'consent.valid', 'consent.not_required', 'consent.missing', 'consent.revoked', 'consent.expired',
  'hours.within_window', 'hours.outside_window', 'hours.holiday', 'hours.emergency', 'hours.no_emergency',
  'frequency.ok', 'frequency.cap',
  'roaming.home', 'roaming.not_mobile', 'roaming.not_required', 'roaming.abroad', 'roaming.unknown',
  'campaign.unknown', 'campaign.abandon_rate', 'lead_state.invalid', 'gate.unavailable',
];

const FAMILIES = {
  number: 'Number', lead_state: 'Lead state', dnc: 'Do-not-call lists', consent: 'Consent',
  hours: 'Calling hours', frequency: 'How often called', roaming: 'Roaming', campaign: 'Campaign',
  gate: 'Gateway',
};

export function family(code) {
  return String(code).split('.')[0];
}

export function familyTitle(code) {
  return FAMILIES[family(code)] ?? family(code);
}

/** "Law: 47 CFR 64.1200(c)(1)" — where a rule comes from, when the evidence names it. */
function cite(source) {
  if (!source || !source.citation) return null;
  return `${source.policy ? 'Company policy' : 'Law'}: ${source.citation}`;
}

function cites(sources) {
  const named = (Array.isArray(sources) ? sources : [sources]).map(cite).filter(Boolean);
  return named.length ? [`${[...new Set(named)].join('; ')}.`] : [];
}

function day(iso) {
  return iso ? String(iso).slice(0, 10) : '';
}

function number(code, d) {
  if (code === 'number.invalid') {
    return [`“${d.input ?? ''}” is not a phone number that can be dialled${d.why ? `: ${d.why}` : ''}.`];
  }
  if (code === 'number.emergency') {
    const service = d.service ? ` (${d.service})` : '';
    return [`${d.digits ?? d.dialled} is an emergency or service number${service}: never blocked, and no other check runs.`];
  }
  const where = [region(d.region), d.subdivision].filter(Boolean).join(', ');
  return [`${d.e164 ?? 'The number'} is a valid ${lineType(d.line_type)} number${where ? ` in ${where}` : ''}.`];
}

function leadState(code, d) {
  return [`The lead's state “${d.value ?? ''}” is no state or province of ${region(d.country) || 'the number\'s country'}${d.why ? ` (${d.why})` : ''}: the call could not be judged by that state's rules.`];
}

function dncHit(code, d) {
  const out = [];
  if (code === 'dnc.prefix') {
    out.push(`The number is covered by the wildcard ${d.prefix ?? ''} on ${listName(d.list)}.`);
  } else if (d.source === 'registry') {
    out.push(`The number is on ${listName(d.list)} (the version of ${day(d.list_version) || 'an unknown date'}).`);
  } else {
    out.push(`The number is on ${listName(d.list)} since ${d.added_at ? instant(d.added_at) : 'an unknown date'}.`);
  }
  const origin = [d.source && d.source !== 'registry' ? `source: ${d.source}` : null, d.entry_id ? `entry #${d.entry_id}` : null];
  if (origin.some(Boolean)) out.push(`(${origin.filter(Boolean).join(', ')})`);
  if (d.also_on && d.also_on.length) out.push(`Also on: ${d.also_on.map(listName).join(', ')}.`);
  if (d.added_after_instant_judged) out.push('It was added after the instant judged; it still blocks, on the safe side.');
  return [...out, ...cites(d.source_of_rule)];
}

function dnc(code, d) {
  if (code === 'dnc.clear') {
    const lists = Object.entries(d.lists ?? {});
    const out = ['The number is on no do-not-call list that applies.'];
    if (lists.length) out.push(`National lists checked: ${lists.map(([n, date]) => `${listName(n)} of ${date}`).join('; ')}.`);
    for (const e of d.exemptions ?? []) {
      out.push(`Listed on ${listName(e.list)}${e.stale ? ' (stale)' : ''}, but exempt by ${e.kind ?? 'a'} consent #${e.consent_id} (${e.source ?? 'unknown source'}).`);
    }
    return out;
  }
  if (code === 'dnc.list_stale') {
    const out = [d.loaded === false
      ? `${listName(d.list)} has never been imported, and the rules need it: calls are blocked until it is.`
      : `${listName(d.list)} is ${plural(d.age_days, 'day')} old (data of ${d.list_date}); the rules accept at most ${d.max_age_days} days. Calls are blocked until a fresh copy is imported.`];
    return [...out, ...cites(d.source)];
  }
  return dncHit(code, d);
}

function consentRow(d) {
  const parts = [`${d.kind ?? 'a'} consent #${d.consent_id ?? '?'}`, `from ${d.source ?? 'an unknown source'}`];
  if (d.granted_at) parts.push(`given ${instant(d.granted_at)}`);
  if (d.scope) parts.push(`for ${d.scope.replace('purpose:', 'purpose ').replace('campaign:', 'campaign ')}`);
  return parts.join(', ');
}

function consent(code, d) {
  const accepted = Array.isArray(d.kinds_accepted) ? ` (accepted kinds: ${d.kinds_accepted.join(', ')})` : '';
  const later = d.granted_after_instant_judged
    ? [`A consent was given only later: ${consentRow(d.granted_after_instant_judged)}.`] : [];
  switch (code) {
    case 'consent.not_required':
      return [`No consent is needed for ${d.purpose ?? 'this kind of'} calls here.`];
    case 'consent.valid': {
      const until = d.expires_at ? `, valid until ${instant(d.expires_at)}` : '';
      return [`Consent on record: ${consentRow(d)}${until}.`, ...cites(d.required_by)];
    }
    case 'consent.revoked':
      return [`The consent was withdrawn on ${instant(d.revoked_at)}: ${consentRow(d)}.`, ...later, ...cites(d.required_by)];
    case 'consent.expired':
      return [`The consent expired on ${instant(d.expires_at)}: ${consentRow(d)}.`, ...later, ...cites(d.required_by)];
    default: {
      const out = [`No consent on record for ${d.purpose ?? 'these'} calls${accepted}.`];
      if (d.not_accepted) out.push(`The consent held is not of a kind accepted here: ${consentRow(d.not_accepted)}.`);
      return [...out, ...later, ...cites(d.required_by)];
    }
  }
}

function hours(code, d) {
  const out = [];
  if (code === 'hours.emergency') {
    return [`A declared emergency in area ${d.area} (${d.declaration ?? 'no text'}) stops these calls until ${instant(d.ends_at)}.`, ...cites(d.source)];
  }
  if (code === 'hours.no_emergency') {
    return [`No declared emergency is in force in ${(d.areas ?? []).join(', ') || 'the areas that stop these calls'}.`];
  }
  if (code === 'hours.outside_window' || code === 'hours.holiday') {
    if (d.why) {
      out.push(`The call is outside the calling hours: ${d.why}.`);
    } else {
      const windows = (d.windows ?? []).length ? `calls are allowed ${d.windows.join(', ')}` : 'no calls are allowed that day';
      const holiday = code === 'hours.holiday' ? ` It is a holiday there: ${d.holiday}.` : '';
      out.push(`Local time in ${zone(d.failed_zone)}: ${wall(d.local_time)}; ${windows} by the ${d.failed_layer} rules.${holiday}`);
    }
  } else if (d.note) {
    out.push(`Within the calling hours: ${d.note}.`);
  } else {
    out.push('Inside the calling window in every time zone the number may be in.');
  }
  const locals = Object.entries(d.local_times ?? {}).filter(([z]) => z !== d.failed_zone);
  if (locals.length) {
    const label = d.failed_zone ? 'Other zones the number may be in' : `Local time${locals.length > 1 ? 's' : ''}`;
    out.push(`${label}: ${locals.map(([z, t]) => `${zone(z)} ${wall(t)}`).join('; ')}.`);
  }
  if (d.zone_note) out.push(`Zones: ${d.zone_note}.`);
  if (d.no_common_window) out.push(`The number's ${plural((d.candidate_zones ?? []).length, 'zone')} share no window: judged by the stated presumption.`);
  return [...out, ...cites(d.source)];
}

function capLine(c) {
  const scope = c.per_campaign ? ' in this campaign' : '';
  return `${plural(c.attempts, 'call')} in the last ${period(c.period_seconds)}${scope}, of ${c.max_calls} allowed (${c.layer} rules)`;
}

function frequency(code, d) {
  if (code === 'frequency.cap') {
    const out = [`${capLine(d)}: the cap is reached.`];
    if (d.frees_at) out.push(`The next call is allowed from ${instant(d.frees_at)}.`);
    return [...out, ...cites(d.source)];
  }
  const caps = d.caps ?? [];
  if (!caps.length) return ['No frequency cap applies to this call.'];
  return caps.map((c) => `${capLine(c)}.`);
}

function roaming(code, d) {
  const hlr = [d.provider ? `HLR ${d.provider}` : null, d.age_seconds != null ? `answer ${period(Math.round(d.age_seconds))} old` : null]
    .filter(Boolean).join(', ');
  const via = hlr ? ` (${hlr})` : '';
  switch (code) {
    case 'roaming.not_required': return ['No roaming check is needed for this call.'];
    case 'roaming.not_mobile': return [`Not a mobile line (${lineType(d.line_type)}): no roaming check.`];
    case 'roaming.home': return [`The subscriber is in their home network${via}.`, ...cites(d.sources)];
    case 'roaming.abroad': {
      const out = [`The subscriber is roaming in ${region(d.visited_country) || 'another country'}${via}.`];
      if (d.allowed_by) out.push(`Allowed: the ${d.allowed_by}.`);
      return [...out, ...cites(d.sources)];
    }
    default: {
      const cause = d.cause === 'no_provider' ? 'no HLR provider is configured' : d.cause ?? 'no answer';
      const rule = d.on_unknown ? ` The rules say: ${d.on_unknown} when there is no answer.` : '';
      return [`Whether the subscriber is abroad is unknown: ${cause}.${rule}`, ...cites(d.sources)];
    }
  }
}

function campaign(code, d) {
  if (code === 'campaign.unknown') return [`No campaign named “${d.campaign}” is defined: calls of unknown campaigns are blocked.`];
  const rate = d.rate ?? d.abandon_rate;
  const limit = d.limit ?? d.max_rate ?? d.abandon_limit;
  const pct = (x) => (typeof x === 'number' && x <= 1 ? `${(x * 100).toFixed(1)} %` : String(x));
  if (rate != null && limit != null) {
    const window = d.window_seconds ? ` over the last ${period(d.window_seconds)}` : d.window ? ` over ${d.window}` : '';
    return [`The campaign's abandoned-call rate is ${pct(rate)}${window}, over its limit of ${pct(limit)}.`, ...cites(d.source)];
  }
  return ['The campaign is paused by its abandoned-call rate.', ...cites(d.source)];
}

function gate(code, d) {
  return [`The gateway could not read the facts (${d.cause ?? 'unknown cause'}), so the call was blocked: no facts, no call.`];
}

const BY_FAMILY = { number, lead_state: leadState, dnc, consent, hours, frequency, roaming, campaign, gate };

/** Sentences for one reason {code, passed, detail}. */
export function describe(reason) {
  const format = BY_FAMILY[family(reason.code)];
  const detail = reason.detail && typeof reason.detail === 'object' ? reason.detail : {};
  if (!format) return [];
  try {
    return format(reason.code, detail);
  } catch {
    return []; // evidence of a shape this page does not know: the raw evidence still shows it
  }
}

/** When a blocked decision's number may be called again, in the reader's zone and the callee's. */
export function nextCallable(decision) {
  if (!decision.next_callable_at) return null;
  const hours = (decision.reasons ?? []).find((r) => !r.passed && r.detail && r.detail.failed_zone);
  const there = hours ? inZone(decision.next_callable_at, hours.detail.failed_zone) : '';
  return `${instant(decision.next_callable_at)}${there ? ` (${there})` : ''}`;
}

/** One line for a decision's outcome, e.g. for a log row's title or a heading. */
export function summary(decision) {
  if (decision.verdict === 'ALLOW') return 'Allowed: every check passed.';
  const failed = (decision.reasons ?? []).filter((r) => !r.passed);
  const first = failed[0] ?? { code: decision.reason, detail: {} };
  const words = describe(first)[0] ?? decision.reason;
  return `Blocked by ${familyTitle(first.code).toLowerCase()}: ${words}`;
}
