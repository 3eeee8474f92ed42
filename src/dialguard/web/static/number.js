// A number: may it be called now (or at a chosen time), and if not, why and from when. A dry run on the
// gateway (GET /v1/numbers/{number}/explain): nothing is stored, nothing counts as a call.

import { getJson } from './api.js';
import { dncAction, evidenceButton, reasonList, verdictBadge } from './decision.js';
import { $, h, put, say } from './dom.js';
import { fromLocalInput, instant } from './format.js';
import { describe, familyTitle, nextCallable } from './reasons.js';

let form; let result; let error;

function answer(got, asked) {
  const when = asked ? `at ${instant(got.at)}` : 'now';
  const d = got.decision;
  if (got.may_call) {
    return h('div', { class: 'answer allow' },
      h('p', { class: 'big' }, `✓ ${got.number} may be called ${when}.`),
      h('p', {}, `As a call of campaign ${got.campaign} (${got.purpose}): every check passed.`));
  }
  const failed = (d.reasons ?? []).filter((r) => !r.passed);
  return h('div', { class: 'answer block' },
    h('p', { class: 'big' }, `✗ ${got.number} may not be called ${when}.`),
    h('p', {}, `As a call of campaign ${got.campaign} (${got.purpose}). Why:`),
    h('ul', {}, failed.map((r) => h('li', {}, h('strong', {}, `${familyTitle(r.code)}: `), describe(r)[0] ?? r.code))),
    h('p', { class: 'next' }, got.next_callable_at
      ? `It may be called from ${nextCallable(d)}.`
      : 'Waiting alone will not make it callable: the block lasts until the facts change (a list entry, a consent).'));
}

/** Ask the gateway and show its answer; `note` is said once it is shown (after a write, say). */
async function explain(event, note) {
  event?.preventDefault();
  const data = new FormData(form);
  const number = String(data.get('number') || '').trim();
  say(error, '');
  if (!number) {
    say(error, 'Type a number to explain.');
    return;
  }
  const at = fromLocalInput(data.get('at'));
  result.replaceChildren(h('p', {}, 'Asking the gateway…'));
  let got;
  try {
    got = await getJson(`/v1/numbers/${encodeURIComponent(number)}/explain`, {
      params: { campaign: data.get('campaign'), at, lead_state: String(data.get('lead_state') || '').trim() },
    });
  } catch (err) {
    result.replaceChildren();
    say(error, err.errorId === 'invalid_number' ? `Not a phone number: ${err.message}` : err.message);
    return;
  }
  const status = h('p', { class: 'status', role: 'status', hidden: true });
  put(result,
    answer(got, Boolean(at)),
    h('div', { class: 'toolbar' }, evidenceButton(got.number, status), dncAction(got.number, status, (done) => explain(null, done))),
    status,
    h('h2', {}, 'Every check ', verdictBadge(got.decision.verdict)),
    reasonList(got.decision),
    got.explanation.length ? h('details', { class: 'rules' },
      h('summary', {}, 'The rules, step by step'),
      h('pre', {}, got.explanation.join('\n'))) : null);
  if (note) say(status, note);
}

export function init() {
  form = $('#number-form');
  result = $('#number-result');
  error = $('#number-error');
  form.addEventListener('submit', explain);
}

/** Open with a number filled in (from #/number?n=...), or as it was left. */
export function show(number) {
  if (number) {
    form.elements.number.value = number;
    explain();
  }
}
