// Do-not-call lists: each national list's live version, its size and the date of its data, and its age
// against the 31-day rule (the US Telemarketing Sales Rule: a list no older than 31 days), warned at 25.

import { getJson } from './api.js';
import { $, h } from './dom.js';
import { daysSince, instant, listName, plural } from './format.js';

export const MAX_AGE_DAYS = 31;
export const WARN_AGE_DAYS = 25;

function freshness(list) {
  if (!list.list_date) {
    return { level: 'stale', text: '✗ Never imported: calls that need this list are blocked until it is.' };
  }
  const age = daysSince(list.list_date);
  if (age >= MAX_AGE_DAYS) {
    return { level: 'stale', age, text: `✗ Stale: ${plural(age, 'day')} old (limit ${MAX_AGE_DAYS}). Calls that need it are blocked (dnc.list_stale) until a fresh copy is imported.` };
  }
  if (age >= WARN_AGE_DAYS) {
    return { level: 'warn', age, text: `⚠ Import a fresh copy soon: ${plural(age, 'day')} old; stale at ${MAX_AGE_DAYS}, in ${plural(MAX_AGE_DAYS - age, 'day')}.` };
  }
  return { level: 'ok', age, text: `✓ Fresh: ${plural(age, 'day')} old.` };
}

export async function show() {
  const body = $('#lists-body');
  const error = $('#lists-error');
  error.hidden = true;
  let lists;
  try {
    lists = (await getJson('/v1/dnc/lists')).lists ?? [];
  } catch (err) {
    error.textContent = `The lists could not be read: ${err.message}`;
    error.hidden = false;
    return;
  }
  body.replaceChildren(...(lists.length ? lists.map((list) => {
    const fresh = freshness(list);
    return h('tr', { class: `freshness-${fresh.level}`, 'data-list': list.name },
      h('th', { scope: 'row' }, h('code', {}, list.name),
        listName(list.name).startsWith('the list ') ? null : h('div', { class: 'note' }, listName(list.name))),
      h('td', { class: 'date' }, list.list_date ?? '—'),
      h('td', { class: 'count' }, list.row_count != null ? Number(list.row_count).toLocaleString() : '—'),
      h('td', { class: 'count' }, list.rejected != null ? Number(list.rejected).toLocaleString() : '—'),
      h('td', {}, list.live_at ? instant(list.live_at) : '—', list.imported_by ? h('div', { class: 'note' }, `by ${list.imported_by}`) : null),
      h('td', { class: `fresh ${fresh.level}` }, fresh.text));
  }) : [h('tr', {}, h('td', { colspan: 6 }, 'No national list has been imported (dialguard dnc import FILE --list NAME --date …).'))]));
}
