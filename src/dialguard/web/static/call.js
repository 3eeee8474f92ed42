// A call: its decision with every reason passed and failed in words, when it may be called again, and
// its timeline. From GET /v1/calls/{id} when the gateway has it; otherwise from what this tab's feed saw.

import { getJson } from './api.js';
import { dncAction, evidenceButton, reasonList, verdictBadge } from './decision.js';
import { $, h, put, say } from './dom.js';
import * as feed from './feed.js';
import { instant } from './format.js';
import { nextCallable, summary } from './reasons.js';

let body; let heading;
let current = null; // {callId, decision, timeline, outcome, note}

function words(kind) {
  return String(kind ?? '').replace(/[._]/g, ' ').replace(/([a-z])([A-Z])/g, '$1 $2');
}

function detailText(detail) {
  if (detail == null) return '';
  if (typeof detail !== 'object') return String(detail);
  return Object.entries(detail)
    .filter(([, v]) => v != null && v !== '')
    .map(([k, v]) => `${words(k)}: ${typeof v === 'object' ? JSON.stringify(v) : v}`)
    .join('; ');
}

function merged(timeline, seen) {
  const all = [...(timeline ?? []), ...(seen ?? [])];
  const unique = new Map(all.map((e) => [e.id ?? `${e.at}|${e.kind}|${JSON.stringify(e.detail)}`, e]));
  return [...unique.values()].sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
}

function timelineTable(decision, events) {
  const first = h('tr', {},
    h('td', {}, instant(decision.decided_at)),
    h('td', {}, 'decision'),
    h('td', {}, `${decision.verdict} (${decision.reason})`));
  return h('table', { class: 'timeline' },
    h('caption', { class: 'visually-hidden' }, 'What happened in the call, in order'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'When'), h('th', { scope: 'col' }, 'Event'), h('th', { scope: 'col' }, 'Detail'))),
    h('tbody', {}, first, events.map((e) => h('tr', {},
      h('td', {}, instant(e.at)), h('td', {}, words(e.kind)), h('td', {}, detailText(e.detail))))));
}

function outcomeText(o) {
  if (!o) return null;
  const parts = [`answered ${instant(o.answered_at)}`];
  parts.push(o.agent_at ? `an agent took it ${instant(o.agent_at)}` : 'no agent took it');
  if (o.abandoned) parts.push('abandoned (counts towards the campaign\'s abandon rate)');
  return parts.join('; ');
}

function facts(d, outcome) {
  const version = d.rules_version ? h('code', { title: d.rules_version }, d.rules_version.slice(0, 12)) : '—';
  const pairs = [
    ['Number', h('span', { class: 'num' }, d.number)],
    ['Campaign', d.campaign],
    ['Verdict', verdictBadge(d.verdict)],
    ['Reason', h('code', {}, d.reason)],
    ['Decided', instant(d.decided_at)],
    ['Next callable', d.next_callable_at ? nextCallable(d) : d.verdict === 'ALLOW' ? '— (allowed)' : 'not by waiting: the facts must change'],
    ['Rules version', version],
    outcome === undefined ? null : ['Outcome', outcomeText(outcome) ?? 'not answered, or not yet'],
    ['Call id', h('code', {}, d.call_id)],
  ].filter(Boolean);
  return h('dl', { class: 'facts' }, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function render() {
  const { decision, timeline, outcome, note } = current;
  const status = h('p', { class: 'status', role: 'status' });
  status.hidden = true;
  const events = merged(timeline, feed.timelines.get(decision.call_id));
  heading.textContent = `Call to ${decision.number}`;
  put(body,
    h('p', { class: `summary ${decision.verdict === 'ALLOW' ? 'allow' : 'block'}` }, summary(decision)),
    note ? h('p', { class: 'note' }, note) : null,
    facts(decision, outcome),
    h('div', { class: 'toolbar' }, evidenceButton(decision.number, status),
      dncAction(decision.number, status)),
    status,
    h('h2', {}, 'Why: every check'),
    reasonList(decision),
    h('h2', {}, 'Timeline'),
    timelineTable(decision, events),
    events.length ? null : h('p', { class: 'note' }, 'No call events yet: they appear as the call is placed, answered and ended.'),
  );
}

export async function show(callId) {
  current = null;
  heading.textContent = 'A call';
  body.replaceChildren(h('p', {}, 'Loading…'));
  let decision = null; let timeline = null; let outcome; let note = ''; // outcome stays undefined when the gateway was not asked
  try {
    const got = await getJson(`/v1/calls/${encodeURIComponent(callId)}`);
    decision = got.decision ?? null;
    timeline = got.timeline ?? [];
    outcome = got.outcome ?? null;
  } catch (err) {
    if (err.status !== 404 && !err.absent) note = `The gateway's record of this call could not be read (${err.message}): shown as this page saw it.`;
  }
  if (!decision) {
    decision = feed.recent.get(callId) ?? null;
    if (decision && !note) note = 'Shown from the live log of this page; the call events are those seen since it opened.';
  }
  if (!decision) {
    const message = h('p', { class: 'error', role: 'alert' });
    say(message, `No call ${callId}: the gateway did not find it, and it is not in this page's recent log.`);
    body.replaceChildren(message);
    return;
  }
  current = { callId, decision, timeline, outcome, note };
  render();
}

export function init() {
  body = $('#call-body');
  heading = $('#call-h');
  feed.subscribe((kind, event) => {
    if (kind === 'call' && current && event.call_id === current.callId && location.hash.startsWith('#/calls/')) {
      const table = body.querySelector('table.timeline');
      table?.replaceWith(timelineTable(current.decision, merged(current.timeline, feed.timelines.get(current.callId))));
    }
  });
}
