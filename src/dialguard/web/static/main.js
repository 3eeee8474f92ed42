// The console's entry: sign-in, the views behind a hash route (#/live, #/calls/ID, #/campaigns, #/lists,
// #/number), and the header. The token is typed in, checked with GET /v1/whoami, and kept in this tab's
// sessionStorage; it never appears in a URL.

import { clearSession, getJson, saveSession, session } from './api.js';
import * as call from './call.js';
import * as campaigns from './campaigns.js';
import { $, say } from './dom.js';
import * as feed from './feed.js';
import * as lists from './lists.js';
import * as live from './live.js';
import * as number from './number.js';
import { CODES } from './reasons.js';

const TITLES = {
  signin: 'Sign in', live: 'Live call log', call: 'A call', campaigns: 'Campaigns', lists: 'Lists', number: 'A number',
};
const READERS = ['admin', 'supervisor'];
let started = false;

function showView(name) {
  for (const section of document.querySelectorAll('main > section.view')) {
    section.hidden = section.id !== `view-${name}`;
  }
  for (const link of document.querySelectorAll('nav a[data-view]')) {
    if (link.dataset.view === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `${TITLES[name]} · dialguard`;
  $(`#view-${name} h1`)?.focus({ preventScroll: true });
}

function route() {
  if (!session()) {
    showView('signin');
    $('#token').focus();
    return;
  }
  const [path, search] = location.hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean);
  // Not URLSearchParams: it reads '+' as a space, and numbers begin with one.
  const param = (name) => {
    const found = new RegExp(`(?:^|&)${name}=([^&]*)`).exec(search ?? '');
    return found ? decodeURIComponent(found[1]) : null;
  };
  if (parts[0] === 'calls' && parts[1]) {
    showView('call');
    call.show(decodeURIComponent(parts[1]));
  } else if (parts[0] === 'campaigns') {
    showView('campaigns');
    campaigns.show();
  } else if (parts[0] === 'lists') {
    showView('lists');
    lists.show();
  } else if (parts[0] === 'number') {
    showView('number');
    number.show(param('n'));
  } else {
    if (parts[0] !== 'live') history.replaceState(null, '', '#/live');
    showView('live');
  }
}

function fillCampaigns(list) {
  for (const select of document.querySelectorAll('select[data-campaigns]')) {
    const chosen = select.value;
    for (const option of [...select.options].slice(1)) option.remove();
    for (const c of list) select.append(new Option(c.name, c.name));
    select.value = chosen;
  }
  campaigns.setCampaigns(list);
}

async function loadCampaigns() {
  try {
    fillCampaigns((await getJson('/v1/campaigns')).campaigns ?? []);
  } catch (err) {
    say($('#live-error'), `The campaigns could not be read: ${err.message}`);
  }
}

/** Once signed in: the header, the log and its feed; the campaigns' names arrive when they do. */
function begin() {
  const who = session();
  $('#who').textContent = `${who.name} · ${who.role}${who.role === 'supervisor' ? ' (read-only)' : ''}`;
  $('#top').hidden = false;
  if (!started) {
    started = true;
    live.start();
  }
  loadCampaigns();
}

function signOut(message) {
  clearSession();
  feed.stop();
  started = false;
  $('#top').hidden = true;
  say($('#signin-error'), message ?? '');
  $('#token').value = '';
  if (location.hash) history.replaceState(null, '', location.pathname);
  route();
}

async function signIn(event) {
  event.preventDefault();
  const token = $('#token').value.trim();
  const error = $('#signin-error');
  const button = event.submitter ?? $('#signin-form button');
  say(error, '');
  button.disabled = true;
  try {
    const who = await getJson('/v1/whoami', { token });
    if (!READERS.includes(who.role)) {
      say(error, `This console is for supervisors and admins: ${who.name} is a ${who.role} token.`);
      return;
    }
    saveSession({ token, name: who.name, role: who.role });
    $('#token').value = '';
    begin();
    if (!location.hash || location.hash === '#/') history.replaceState(null, '', '#/live');
    route();
  } catch (err) {
    say(error, err.status === 401 ? `That token was not accepted: ${err.message}.` : `Could not sign in: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

function boot() {
  const datalist = $('#reason-codes');
  for (const code of CODES) datalist.append(new Option(code, code));
  live.init();
  call.init();
  campaigns.init();
  number.init();
  $('#signin-form').addEventListener('submit', signIn);
  $('#sign-out').addEventListener('click', () => signOut('Signed out.'));
  $('.skip').addEventListener('click', (event) => {
    event.preventDefault();
    $('main').focus();
  });
  window.addEventListener('dialguard:unauthorized', (event) => signOut(`Signed out: ${event.detail}. Sign in again.`));
  window.addEventListener('hashchange', route);
  if (session()) {
    // The token may have been revoked since the tab signed in: ask before showing anything.
    getJson('/v1/whoami').then((who) => {
      if (!READERS.includes(who.role)) {
        signOut(`This console is for supervisors and admins: ${who.name} is a ${who.role} token.`);
        return;
      }
      saveSession({ ...session(), name: who.name, role: who.role });
      begin();
      route();
    }).catch((err) => {
      if (err.status !== 401) signOut(`Could not reach the gateway: ${err.message}`);
    });
  } else {
    route();
  }
}

boot();
