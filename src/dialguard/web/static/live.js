// The live call log: decisions as they are made, newest first, filtered, pausable.
//
// At a thousand decisions a second the page must not draw each one: arrivals wait in a queue and are
// drawn once a frame (requestAnimationFrame), as one fragment of at most MAX_ROWS rows; the table
// never holds more than MAX_ROWS rows. Counters are the only thing touched per arrival.

import { download, getJson, pages } from './api.js';
import { decisionsCsv, stamp } from './csv.js';
import { $, h, say } from './dom.js';
import * as feed from './feed.js';
import { fromLocalInput, instant, logTime } from './format.js';

export const MAX_ROWS = 300;

let rows; let state; let counts; let error; let olderButton; let pauseButton; let form;
let filters = {};
let queue = [];
let frame = 0;
let paused = false;
let held = 0;
let received = 0;
let cursor = null;
let loading = null; // the AbortController of the page being fetched
const shown = new Set(); // call ids in the table

function digits(text) {
  return String(text ?? '').replace(/[^\d]/g, '');
}

function matches(d) {
  if (filters.until) return false; // a window that ends is history: the live feed does not add to it
  if (filters.campaign && d.campaign !== filters.campaign) return false;
  if (filters.verdict && d.verdict !== filters.verdict) return false;
  if (filters.number && digits(d.number) !== digits(filters.number)) return false;
  if (filters.since && Date.parse(d.decided_at) < Date.parse(filters.since)) return false;
  return reasonMatches(d);
}

/** The reason filter: a whole code, or a family (dnc) matching any of its failed codes. */
function reasonMatches(d) {
  const wanted = filters.reason;
  if (!wanted) return true;
  const hit = (code) => code === wanted || String(code).startsWith(`${wanted}.`);
  return hit(d.reason) || (d.reasons ?? []).some((r) => !r.passed && hit(r.code));
}

function row(d) {
  const blocked = d.verdict !== 'ALLOW';
  return h('tr', { 'data-call-id': d.call_id, class: blocked ? 'blocked' : 'allowed' },
    h('td', {}, h('a', { href: `#/calls/${encodeURIComponent(d.call_id)}`, title: 'Open this call' }, logTime(d.decided_at))),
    h('td', { class: 'num' }, d.number),
    h('td', {}, d.campaign),
    h('td', {}, h('span', { class: `verdict ${blocked ? 'block' : 'allow'}` }, d.verdict)),
    h('td', {}, h('code', {}, d.reason)),
    h('td', { class: 'wide' }, d.next_callable_at ? instant(d.next_callable_at) : ''));
}

function showCounts() {
  const waiting = paused && held ? ` · paused, ${held.toLocaleString()} new waiting` : '';
  counts.textContent = `${received.toLocaleString()} received · ${rows.rows.length.toLocaleString()} shown${waiting}`;
}

function trim() {
  while (rows.rows.length > MAX_ROWS) {
    const last = rows.lastElementChild;
    shown.delete(last.dataset.callId);
    last.remove();
  }
}

function draw() {
  frame = 0;
  if (!paused) {
    const batch = queue.length > MAX_ROWS ? queue.slice(-MAX_ROWS) : queue;
    queue = [];
    const fragment = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i -= 1) {
      const d = batch[i];
      if (shown.has(d.call_id)) continue;
      shown.add(d.call_id);
      fragment.append(row(d));
    }
    rows.prepend(fragment);
    trim();
  }
  showCounts();
}

function schedule() {
  if (!frame) frame = requestAnimationFrame(draw);
}

/** A decision from the feed (or any source): counted now, drawn at the next frame if it matches. */
export function ingest(decision) {
  received += 1;
  if (matches(decision)) {
    queue.push(decision);
    if (queue.length > 4 * MAX_ROWS) queue = queue.slice(-MAX_ROWS); // only the newest can be drawn
    if (paused) held += 1;
  }
  schedule();
}

function setPaused(value) {
  paused = value;
  pauseButton.setAttribute('aria-pressed', String(paused));
  pauseButton.textContent = paused ? 'Resume' : 'Pause';
  if (!paused) {
    held = 0;
    schedule();
  }
  showCounts();
}

function readFilters() {
  const data = new FormData(form);
  return {
    campaign: data.get('campaign') || '',
    verdict: data.get('verdict') || '',
    reason: String(data.get('reason') || '').trim(),
    number: String(data.get('number') || '').trim(),
    since: fromLocalInput(data.get('since')),
    until: fromLocalInput(data.get('until')),
  };
}

/** The filters as GET /v1/decisions takes them. */
export function apiFilters() {
  const { campaign, verdict, reason, number, since, until } = filters;
  // The API matches a whole code (dnc.internal); a family (dnc) is matched here, on what it sends.
  return { campaign, verdict, reason: reason.includes('.') ? reason : '', number, since, until };
}

function addOlder(decisions) {
  const sorted = [...decisions].sort((a, b) => Date.parse(b.decided_at) - Date.parse(a.decided_at));
  const fragment = document.createDocumentFragment();
  for (const d of sorted) {
    feed.remember(d);
    if (shown.has(d.call_id) || !reasonMatches(d)) continue;
    shown.add(d.call_id);
    fragment.append(row(d));
  }
  rows.append(fragment);
  showCounts();
}

async function loadPage(first) {
  loading?.abort();
  const controller = new AbortController();
  loading = controller;
  say(error, '');
  try {
    const page = await getJson('/v1/decisions', {
      params: { ...apiFilters(), limit: first ? 100 : 200, cursor: first ? null : cursor },
      signal: controller.signal,
    });
    if (loading !== controller) return;
    addOlder(page.decisions ?? []);
    cursor = page.next_cursor ?? null;
    olderButton.hidden = !cursor;
  } catch (err) {
    if (err.name === 'AbortError') return;
    say(error, err.absent
      ? 'This gateway does not list past decisions (GET /v1/decisions): decisions appear from now on.'
      : `Past decisions could not be loaded: ${err.message}`);
  }
}

function apply() {
  filters = readFilters();
  rows.replaceChildren();
  shown.clear();
  queue = [];
  held = 0;
  cursor = null;
  olderButton.hidden = true;
  loadPage(true);
  feed.follow(filters.campaign);
  showCounts();
}

async function exportCsv(event) {
  const button = event.currentTarget;
  button.disabled = true;
  const collected = [];
  try {
    for await (const items of pages('/v1/decisions', apiFilters(), 'decisions')) {
      collected.push(...items);
      say(error, `Collecting decisions for the CSV: ${collected.length.toLocaleString()} so far…`);
    }
    download(new Blob([decisionsCsv(collected)], { type: 'text/csv' }), `decisions-${stamp()}.csv`);
    say(error, `Exported ${collected.length.toLocaleString()} decisions as CSV.`);
  } catch (err) {
    say(error, err.absent
      ? 'This gateway does not list past decisions (GET /v1/decisions), so there is nothing to export yet.'
      : `The CSV could not be made: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

const STATES = {
  connecting: 'connecting…',
  live: '● live',
  retrying: 'reconnecting…',
  absent: 'no live feed on this gateway (GET /v1/events)',
  closed: 'stopped',
};

function onFeed(kind, body) {
  if (kind === 'decision') ingest(body);
  else if (kind === 'state') {
    state.textContent = STATES[body.state] ?? body.state;
    state.dataset.state = body.state;
    state.title = body.detail ?? '';
  }
}

export function init() {
  rows = $('#live-rows');
  state = $('#live-state');
  counts = $('#live-counts');
  error = $('#live-error');
  olderButton = $('#live-older');
  pauseButton = $('#live-pause');
  form = $('#live-filters');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    apply();
  });
  form.addEventListener('reset', () => setTimeout(apply));
  pauseButton.addEventListener('click', () => setPaused(!paused));
  olderButton.addEventListener('click', () => loadPage(false));
  $('#live-csv').addEventListener('click', exportCsv);
  rows.addEventListener('click', (event) => {
    const tr = event.target.closest('tr');
    if (tr && !event.target.closest('a')) location.hash = `#/calls/${encodeURIComponent(tr.dataset.callId)}`;
  });
  feed.subscribe(onFeed);
}

/** After sign-in: the first page of the log, and the feed. */
export function start() {
  received = 0;
  setPaused(false);
  apply();
}
