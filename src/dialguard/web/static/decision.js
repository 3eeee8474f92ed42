// Pieces shared by a call's page and a number's: the reasons in words, the evidence download, and the
// one write the console offers (to writers only): putting a number on the internal do-not-call list.

import { canWrite, downloadFrom, request } from './api.js';
import { h, say } from './dom.js';
import { describe, familyTitle } from './reasons.js';

export function verdictBadge(verdict) {
  const allowed = verdict === 'ALLOW';
  return h('span', { class: `verdict ${allowed ? 'allow' : 'block'}` }, allowed ? '✓ ALLOW' : '✗ BLOCK');
}

/** Every reason, failed first, each with its sentences and the evidence as stored. */
export function reasonList(decision) {
  const reasons = [...(decision.reasons ?? [])].sort((a, b) => Number(a.passed) - Number(b.passed));
  return h('ol', { class: 'reasons' }, reasons.map((r) => h('li', { class: `reason ${r.passed ? 'pass' : 'fail'}`, 'data-code': r.code },
    h('h3', {},
      h('span', { class: 'mark' }, r.passed ? '✓ Passed' : '✗ Failed'), ' ',
      h('span', {}, familyTitle(r.code)), ' ',
      h('code', {}, r.code)),
    h('ul', { class: 'words' }, describe(r).map((line) => h('li', {}, line))),
    h('details', {},
      h('summary', {}, 'Evidence as stored'),
      h('pre', {}, JSON.stringify(r.detail ?? {}, null, 2))))));
}

/** A button that downloads the evidence bundle of a number (GET /v1/evidence/{number}). */
export function evidenceButton(number, status) {
  return h('button', {
    type: 'button',
    class: 'secondary',
    onclick: async (event) => {
      const button = event.currentTarget;
      button.disabled = true;
      say(status, 'Preparing the evidence bundle…');
      try {
        const name = await downloadFrom(`/v1/evidence/${encodeURIComponent(number)}`, {}, `evidence-${number}`);
        say(status, `Downloaded ${name}.`);
      } catch (err) {
        say(status, err.absent
          ? 'This gateway has no evidence export (GET /v1/evidence) yet.'
          : `The evidence could not be downloaded: ${err.message}`);
      } finally {
        button.disabled = false;
      }
    },
  }, 'Download the evidence bundle for this number');
}

/** For admins and dialers only: put the number on the internal list, after a confirmation. */
export function dncAction(number, status, onDone) {
  if (!canWrite()) return null;
  const note = h('input', { type: 'text', name: 'note', placeholder: 'why (e.g. asked not to be called)', 'aria-label': 'Why' });
  const confirm = h('form', { class: 'confirm', hidden: true },
    h('p', {}, `Put ${number} on the internal do-not-call list? It blocks every further call at once.`),
    note,
    h('button', { type: 'submit', class: 'danger' }, 'Confirm'),
    h('button', { type: 'button', class: 'secondary', onclick: () => { confirm.hidden = true; open.hidden = false; open.focus(); } }, 'Cancel'));
  const open = h('button', {
    type: 'button', class: 'danger',
    onclick: () => { confirm.hidden = false; open.hidden = true; note.focus(); },
  }, 'Put on the internal do-not-call list…');
  confirm.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await request('/v1/dnc', {
        method: 'POST',
        body: { number, list: 'internal', source: 'supervisor_console', evidence: { note: note.value } },
      });
      const done = `${number} is on the internal do-not-call list.`;
      say(status, done);
      confirm.hidden = true;
      onDone?.(done);
    } catch (err) {
      say(status, err.status === 403 ? `Refused (403): ${err.message}` : `Not added: ${err.message}`);
      confirm.hidden = true;
      open.hidden = false;
    }
  });
  return h('div', { class: 'write' }, open, confirm);
}
