// The gateway's live feed, one event stream per tab, shared by the views: the live log draws its
// decisions, a call's page its events. The newest decisions and call events are kept for a call's page.

import { query } from './api.js';
import { EventStream } from './sse.js';

const KEEP = 5000; // decisions (and calls' timelines) remembered

export const recent = new Map(); // call_id -> decision JSON (+ id)
export const timelines = new Map(); // call_id -> [{id, at, kind, detail}]
const listeners = new Set();
let stream = null;
let campaign = null;

/** fn(kind, body): kind 'decision' | 'call' | 'state' ({state, detail}). Returns an unsubscribe. */
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(kind, body) {
  for (const fn of listeners) fn(kind, body);
}

function bounded(map, key, value) {
  map.delete(key);
  map.set(key, value);
  if (map.size > KEEP) map.delete(map.keys().next().value);
}

export function remember(decision) {
  if (decision && decision.call_id) bounded(recent, decision.call_id, decision);
}

function onEvent({ event, data }) {
  let body;
  try {
    body = JSON.parse(data);
  } catch {
    return; // not JSON: nothing this page can show
  }
  if (event === 'decision') {
    remember(body);
    emit('decision', body);
  } else if (event === 'call' && body.call_id) {
    const events = timelines.get(body.call_id) ?? [];
    if (!events.some((e) => e.id != null && e.id === body.id)) events.push(body);
    bounded(timelines, body.call_id, events);
    emit('call', body);
  }
}

/** Follow the feed, of one campaign or of all (''): a different campaign reconnects. */
export function follow(name = '') {
  if (stream && campaign === name) return;
  stream?.stop();
  campaign = name;
  stream = new EventStream(`/v1/events${query({ campaign: name })}`, {
    onEvent,
    onState: (state, detail) => emit('state', { state, detail }),
  });
  stream.start();
}

export function stop() {
  stream?.stop();
  stream = null;
  campaign = null;
  recent.clear();
  timelines.clear();
}
