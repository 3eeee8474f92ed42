// Campaigns: what each campaign is, and its calls allowed and blocked by reason over a chosen window,
// counted by the gateway (GET /v1/stats/verdicts) and drawn as bars.

import { download, downloadFrom, getJson } from './api.js';
import { stamp, toCsv } from './csv.js';
import { $, h, put, s, say } from './dom.js';
import { instant, period } from './format.js';
import { familyTitle } from './reasons.js';

let form; let chart; let table; let detail; let status;
let campaigns = [];
let counted = null; // the last answer of /v1/stats/verdicts

function windowOf() {
  const data = new FormData(form);
  const seconds = Number(data.get('window')) || 86400;
  const until = new Date();
  return {
    campaign: data.get('campaign') || '',
    seconds,
    since: new Date(until.getTime() - seconds * 1000).toISOString(),
    until: until.toISOString(),
  };
}

/** [{label, code, verdict, count}] summed over campaigns: allowed first, then blocks, most first. */
function outcomes(counts) {
  const sums = new Map();
  for (const c of counts) {
    const key = c.verdict === 'ALLOW' ? 'ALLOW' : c.reason;
    sums.set(key, (sums.get(key) ?? 0) + c.count);
  }
  const allowed = sums.get('ALLOW') ?? 0;
  sums.delete('ALLOW');
  const blocked = [...sums].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  return [
    { label: 'Allowed', code: 'ok', verdict: 'ALLOW', count: allowed },
    ...blocked.map(([code, count]) => ({ label: `Blocked: ${familyTitle(code).toLowerCase()}`, code, verdict: 'BLOCK', count })),
  ];
}

function bar(count, most) {
  const width = most ? Math.max(count ? 1 : 0, Math.round((count / most) * 300)) : 0;
  return s('svg', { class: 'bar', viewBox: '0 0 300 14', width: 300, height: 14, 'aria-hidden': 'true', focusable: 'false' },
    s('rect', { x: 0, y: 0, width: 300, height: 14, class: 'track' }),
    s('rect', { x: 0, y: 0, width, height: 14, class: 'fill' }));
}

function drawChart(answer, windowSeconds) {
  const rows = outcomes(answer.counts);
  const total = rows.reduce((n, r) => n + r.count, 0);
  const blocked = total - rows[0].count;
  const most = Math.max(...rows.map((r) => r.count));
  const pct = (n) => (total ? ` (${((n / total) * 100).toFixed(1)} %)` : '');
  const who = answer.campaign ? `Campaign ${answer.campaign}` : 'All campaigns';
  put(chart,
    h('p', { class: 'summary' },
      `${who}, last ${period(windowSeconds)} (${instant(answer.since)} to ${instant(answer.until)}): `,
      `${total.toLocaleString()} decisions, ${rows[0].count.toLocaleString()} allowed${pct(rows[0].count)}, `,
      `${blocked.toLocaleString()} blocked${pct(blocked)}.`),
    total === 0 ? h('p', { class: 'note' }, 'No decisions in this window.') : h('table', { class: 'chart' },
      h('caption', { class: 'visually-hidden' }, 'Decisions by outcome and reason'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Outcome'), h('th', { scope: 'col' }, 'Reason'),
        h('th', { scope: 'col', class: 'count' }, 'Decisions'), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Bar')))),
      h('tbody', {}, rows.filter((r) => r.count || r.verdict === 'ALLOW').map((r) => h('tr', { class: r.verdict === 'ALLOW' ? 'allowed' : 'blocked', 'data-code': r.code },
        h('th', { scope: 'row' }, r.label),
        h('td', {}, h('code', {}, r.code)),
        h('td', { class: 'count' }, r.count.toLocaleString()),
        h('td', {}, bar(r.count, most)))))));
}

async function showDetail(name) {
  detail.replaceChildren();
  if (!name) return;
  const listed = campaigns.find((c) => c.name === name);
  let full = listed ?? { name };
  try {
    full = { ...full, ...(await getJson(`/v1/campaigns/${encodeURIComponent(name)}`)) };
  } catch (err) {
    if (!err.absent && err.status !== 404) say(status, `Campaign ${name} could not be read: ${err.message}`);
  }
  const pairs = Object.entries(full).filter(([k]) => !['name', 'settings', 'abandon'].includes(k));
  const settings = Object.entries(full.settings ?? {});
  detail.replaceChildren(
    h('h2', {}, `Campaign ${name}`),
    h('dl', { class: 'facts' },
      pairs.map(([k, v]) => [h('dt', {}, k.replaceAll('_', ' ')), h('dd', {}, typeof v === 'object' ? JSON.stringify(v) : String(v))]),
      settings.map(([k, v]) => [h('dt', {}, `setting: ${k.replaceAll('_', ' ')}`), h('dd', {}, JSON.stringify(v))])),
    abandonTable(full.abandon ?? []));
}

/** Each abandoned-call rule's count against its limit (GET /v1/campaigns/{name}'s "abandon"). */
function abandonTable(rules) {
  if (!rules.length) return h('p', { class: 'note' }, 'No abandoned-call rule applies to this campaign’s callees.');
  const percent = (x) => (x == null ? '—' : `${(x * 100).toFixed(1)} %`);
  const hours = (s) => (s > 86400 ? `${s / 86400} days` : `${s / 3600} h`);
  return h('table', { class: 'abandon' },
    h('caption', {}, 'Abandoned calls against each rule'),
    h('thead', {}, h('tr', {}, ['Rules', 'Window', 'Answered', 'Abandoned', 'Rate', 'Limit', 'State']
      .map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rules.map((r) => h('tr', { class: r.held ? 'blocked' : 'allowed' },
      h('th', { scope: 'row' }, r.pack),
      h('td', {}, hours(r.window_seconds)),
      h('td', { class: 'count' }, String(r.answered ?? '—')),
      h('td', { class: 'count' }, String(r.abandoned ?? '—')),
      h('td', { class: 'count' }, percent(r.rate)),
      h('td', { class: 'count' }, percent(r.limit)),
      h('td', {}, r.held ? 'held: no new calls' : 'under the limit')))));
}

async function refresh() {
  const w = windowOf();
  say(status, '');
  chart.replaceChildren(h('p', {}, 'Counting…'));
  try {
    counted = await getJson('/v1/stats/verdicts', { params: { campaign: w.campaign, since: w.since, until: w.until } });
    drawChart(counted, w.seconds);
  } catch (err) {
    counted = null;
    chart.replaceChildren(h('p', { class: 'error', role: 'alert' }, `The decisions could not be counted: ${err.message}`));
  }
  showDetail(w.campaign);
}

function countsCsv() {
  if (!counted) return;
  const rows = counted.counts.map((c) => [counted.since, counted.until, c.campaign, c.verdict, c.reason, c.count]);
  download(new Blob([toCsv(['since', 'until', 'campaign', 'verdict', 'reason', 'count'], rows)], { type: 'text/csv' }),
    `verdicts-${counted.campaign ?? 'all'}-${stamp()}.csv`);
  say(status, `Downloaded the counts of ${counted.counts.length} outcome rows as CSV.`);
}

async function evidence() {
  const w = windowOf();
  say(status, 'Preparing the evidence bundle…');
  try {
    const name = await downloadFrom('/v1/evidence', { campaign: w.campaign, since: w.since, until: w.until },
      `evidence-${w.campaign || 'all'}-${stamp()}`);
    say(status, `Downloaded ${name}.`);
  } catch (err) {
    say(status, err.absent ? 'This gateway has no evidence export (GET /v1/evidence) yet.' : `No evidence bundle: ${err.message}`);
  }
}

function listTable() {
  table.replaceChildren(
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Purpose'), h('th', { scope: 'col' }, 'Settings'))),
    h('tbody', {}, campaigns.map((c) => h('tr', {},
      h('th', { scope: 'row' }, h('button', {
        type: 'button', class: 'link',
        onclick: () => { form.elements.campaign.value = c.name; refresh(); },
      }, c.name)),
      h('td', {}, c.purpose),
      h('td', {}, Object.keys(c.settings ?? {}).length ? JSON.stringify(c.settings) : '—')))));
}

export function init() {
  form = $('#camp-form');
  chart = $('#camp-chart');
  table = $('#camp-table');
  detail = $('#camp-detail');
  status = $('#camp-status');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    refresh();
  });
  $('#camp-csv').addEventListener('click', countsCsv);
  $('#camp-evidence').addEventListener('click', evidence);
}

/** The campaigns as GET /v1/campaigns lists them (main.js reads them once per sign-in). */
export function setCampaigns(list) {
  campaigns = list;
  listTable();
}

export function show() {
  refresh();
}
