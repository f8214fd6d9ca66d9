// Aqueduct reference clinician console: plain JavaScript over the gateway's
// HTTP API (/openapi.json). The token lives in this tab's sessionStorage
// only; nothing about a person ever goes into the URL. Every value from the
// API is written with textContent, never parsed as HTML.
'use strict';

const ROUTES = {
  SELF_HELP: 'Self-help',
  THERAPY: 'Therapy',
  KETAMINE_REVIEW: 'Ketamine-eligibility review (physician)',
  CRISIS_URGENT: 'Crisis: urgent',
  CRISIS_ACUTE: 'Crisis: acute',
  ROUTE_UNSPECIFIED: 'Not set',
};
const STATES = {
  OPEN: 'Open',
  CLAIMED: 'Claimed',
  DECIDED: 'Decided',
  WITHDRAWN: 'Withdrawn',
  DELIVERED_SELF_HELP: 'Self-help delivered',
};
const FINAL = new Set(['DECIDED', 'WITHDRAWN']);

const $ = (id) => document.getElementById(id);
const el = (tag, text, cls) => {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
};

const state = {
  token: '',
  me: null, // the token's claims (display only: the gateway checks them)
  lease: 600,
  cases: new Map(), // name -> Referral
  selected: '',
  lastEventId: '',
  stream: null, // AbortController of the open event stream
  tick: null,
  wording: new Map(), // "<ruleset version>/<rule id>" -> its description
  expired: new Set(), // cases whose lease, held by me, ran out
};

// ---- API -------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}`, 'Grpc-Timeout': '10S' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
  });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : {};
  } catch (e) {
    json = { message: text };
  }
  if (!res.ok) {
    if (res.status === 401) signOut('Your session ended: sign in again.');
    throw new ApiError(res.status, json);
  }
  return json;
}

const requestId = () =>
  (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`);

// ---- Sign in ---------------------------------------------------------------

function claimsOf(token) {
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)));
  } catch (e) {
    return null;
  }
}

async function signIn(token, lease) {
  const claims = claimsOf(token);
  if (!claims) throw new Error('That is not a bearer token.');
  if (claims.role !== 'clinician' && claims.role !== 'physician') {
    throw new Error('This console is for clinicians and physicians.');
  }
  state.token = token;
  state.me = claims;
  state.lease = lease;
  // The gateway is the judge: a refused token ends here.
  await loadQueue();
  loadWording().catch(showError);
  sessionStorage.setItem('aqueduct.token', token);
  sessionStorage.setItem('aqueduct.lease', String(lease));
  $('sign-in').hidden = true;
  $('work').hidden = false;
  $('sign-out').hidden = false;
  const who = $('who');
  who.hidden = false;
  who.textContent = `${claims.sub} · ${claims.role} · licensed in ${(claims.states || []).join(', ') || 'no state'}`;
  follow();
  state.tick = setInterval(renderTimes, 1000);
}

function signOut(message) {
  if (state.stream) state.stream.abort();
  state.stream = null;
  clearInterval(state.tick);
  sessionStorage.removeItem('aqueduct.token');
  state.token = '';
  state.cases.clear();
  state.selected = '';
  $('work').hidden = true;
  $('sign-in').hidden = false;
  $('sign-out').hidden = true;
  $('who').hidden = true;
  $('live').hidden = true;
  $('sign-in-error').textContent = message || '';
}

// ---- Queue -----------------------------------------------------------------

async function loadQueue() {
  const cases = new Map();
  let token = '';
  for (let page = 0; page < 20; page++) {
    const q = new URLSearchParams({ includeClaimed: 'true', pageSize: '100' });
    if (token) q.set('pageToken', token);
    const res = await api('GET', `/v1/referrals?${q}`);
    for (const c of res.cases || []) cases.set(c.name, c);
    token = res.nextPageToken || '';
    if (!token) break;
  }
  state.cases = cases;
  renderQueue();
}

// Every rule's plain-words description, from the loaded rulesets (results
// carry only rule ids, conditions and inputs).
async function loadWording() {
  const res = await api('GET', '/v1/rulesets');
  for (const rs of res.rulesets || []) {
    for (const r of rs.rules || []) {
      if (r.description) state.wording.set(`${rs.version}/${r.ruleId}`, r.description);
    }
  }
  const c = state.cases.get(state.selected);
  if (c) renderCase(c);
}

function rank(c) {
  // The service's order: acute crisis, then priority, then oldest first.
  const acute = c.currentRoute === 'CRISIS_ACUTE' ? 0 : 1;
  const pr = { URGENT: 1, ROUTINE: 2, LOW: 3 }[c.priority] || 4;
  return [acute, pr, Number(c.createTimeMs || 0)];
}
function compare(a, b) {
  const x = rank(a);
  const y = rank(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return a.name < b.name ? -1 : 1;
}

function age(ms) {
  const s = Math.max(0, Math.round((Date.now() - Number(ms)) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d`;
}

function renderQueue() {
  const list = $('queue');
  list.replaceChildren();
  const open = [...state.cases.values()].filter((c) => !FINAL.has(c.state)).sort(compare);
  $('queue-count').textContent = `(${open.length})`;
  $('queue-empty').hidden = open.length > 0;
  for (const c of open) {
    const li = el('li');
    const b = el('button', undefined, 'case-row');
    b.type = 'button';
    b.dataset.name = c.name;
    const urgent = c.priority === 'URGENT';
    if (urgent) b.classList.add('urgent');
    if (c.name === state.selected) b.setAttribute('aria-current', 'true');
    if (urgent) b.append(el('span', 'URGENT', 'badge urgent'));
    if (c.overdue) b.append(el('span', 'OVERDUE', 'badge overdue'));
    if (c.state === 'CLAIMED') {
      b.append(el('span', c.claimedBy === state.me.sub ? 'Held by you' : 'Held', 'badge held'));
    }
    b.append(el('strong', ROUTES[c.currentRoute] || c.currentRoute));
    const meta = el('span', undefined, 'meta');
    meta.append(`${c.locationState || 'no state'} · ${STATES[c.state] || c.state} · waiting `);
    meta.append(el('span', age(c.createTimeMs), 'age'));
    b.append(meta);
    b.dataset.created = c.createTimeMs;
    b.setAttribute(
      'aria-label',
      `${urgent ? 'Urgent. ' : ''}${c.overdue ? 'Overdue. ' : ''}${ROUTES[c.currentRoute] || ''}, ${c.locationState || 'no state'}, ${STATES[c.state] || c.state}`,
    );
    b.addEventListener('click', () => openCase(c.name));
    li.append(b);
    list.append(li);
  }
}

function renderTimes() {
  for (const span of document.querySelectorAll('.case-row')) {
    const a = span.querySelector('.age');
    if (a) a.textContent = age(span.dataset.created);
  }
  renderLease();
}

// ---- Live updates (Server-Sent Events over fetch, so the token goes in a
// header and never in the URL) ---------------------------------------------

function setLive(on, text) {
  const live = $('live');
  live.hidden = false;
  live.className = `live ${on ? 'on' : 'off'}`;
  live.textContent = text;
}

async function follow() {
  if (state.stream) state.stream.abort();
  const ctl = new AbortController();
  state.stream = ctl;
  let delay = 1000;
  while (!ctl.signal.aborted) {
    try {
      const headers = { Authorization: `Bearer ${state.token}`, Accept: 'text/event-stream' };
      if (state.lastEventId) headers['Last-Event-ID'] = state.lastEventId;
      const res = await fetch('/v1/referrals:watch', { headers, signal: ctl.signal, cache: 'no-store' });
      if (res.status === 401) {
        signOut('Your session ended: sign in again.');
        return;
      }
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let at;
        while ((at = buffer.indexOf('\n\n')) >= 0) {
          onFrame(buffer.slice(0, at));
          buffer = buffer.slice(at + 2);
        }
        delay = 1000;
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    setLive(false, 'Reconnecting…');
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

function onFrame(frame) {
  let event = 'message';
  let data = '';
  let id = '';
  for (const line of frame.split('\n')) {
    if (line.startsWith(':')) continue; // keep-alive
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') event = value;
    else if (field === 'data') data += value;
    else if (field === 'id') id = value;
  }
  if (id) state.lastEventId = id;
  if (event === 'watching') {
    setLive(true, 'Live');
  } else if (event === 'reset') {
    loadQueue().catch(showError);
  } else if (event === 'queue') {
    const e = JSON.parse(data);
    onCase(e.referral, e.kind);
  } else if (event === 'error') {
    signOut('Your session ended: sign in again.');
  }
}

function onCase(c, kind) {
  const before = state.cases.get(c.name);
  // My claim ended without my releasing or deciding: its lease ran out
  // (the service's sweep may say so before this page's clock does).
  if (before && before.state === 'CLAIMED' && before.claimedBy === state.me.sub &&
      c.state === 'OPEN' && Number(before.leaseExpireTimeMs) <= Date.now() + 2000) {
    state.expired.add(c.name);
  }
  state.cases.set(c.name, c);
  renderQueue();
  if (!before && c.priority === 'URGENT') {
    $('new-urgent').textContent = `New urgent case: ${ROUTES[c.currentRoute] || ''}, ${c.locationState || ''}`;
  }
  if (c.name === state.selected) renderCase(c, kind);
}

// ---- A case ----------------------------------------------------------------

async function openCase(name) {
  state.selected = name;
  renderQueue();
  try {
    const c = await api('GET', `/v1/${name}`);
    state.cases.set(c.name, c);
    renderCase(c);
    $('case-title').focus();
  } catch (e) {
    showError(e);
  }
}

function fact(dl, term, value) {
  dl.append(el('dt', term), el('dd', value));
}

function renderCase(c) {
  $('case').hidden = false;
  const urgent = c.priority === 'URGENT';
  $('case-title').textContent = `${urgent ? 'Urgent: ' : ''}${ROUTES[c.currentRoute] || c.currentRoute}`;
  const banner = $('case-banner');
  banner.hidden = !urgent;
  banner.textContent = urgent
    ? 'Suicide risk: crisis resources (988) were shown to the person at once. Assess safety now.'
    : '';
  const facts = $('case-facts');
  facts.replaceChildren();
  fact(facts, 'State', STATES[c.state] || c.state);
  fact(facts, 'Priority', c.priority);
  fact(facts, 'Proposed route', ROUTES[c.proposedRoute] || c.proposedRoute);
  fact(facts, 'Current route', ROUTES[c.currentRoute] || c.currentRoute);
  fact(facts, 'Reviewer', c.requiredReviewer);
  fact(facts, 'Location', c.locationState || 'not given');
  fact(facts, 'Waiting', age(c.createTimeMs));
  fact(facts, 'Screening', c.screeningFinished ? 'finished' : 'not finished (opened on a risk answer)');
  if (c.overdue) fact(facts, 'Overdue', 'yes: not claimed in time');
  if (c.decision && c.decision.action && c.decision.action !== 'ACTION_UNSPECIFIED') {
    fact(facts, 'Decision', `${c.decision.action} by ${c.decision.decidedBy}: ${c.decision.reason}`);
  }
  const result = c.result || {};
  const risk = $('risk-answers');
  risk.replaceChildren();
  for (const a of c.riskAnswers || []) risk.append(el('li', `${a.question}: ${a.answer}`));
  if (!risk.children.length) risk.append(el('li', 'None.'));
  const flags = $('flags');
  flags.replaceChildren();
  for (const f of result.safetyFlags || []) flags.append(el('li', `${f.kind}: ${f.explanation}`));
  if (!flags.children.length) flags.append(el('li', 'None.'));
  const body = $('scores').querySelector('tbody');
  body.replaceChildren();
  for (const s of result.scores || []) {
    if (s.completeness === 'NOT_ADMINISTERED') continue;
    const tr = el('tr');
    let total = '–';
    if (s.total !== undefined) total = String(s.total);
    else if (s.band) total = `mean ${s.mean}`;
    tr.append(el('td', s.instrumentId), el('td', total),
      el('td', s.bandLabel || s.band || '–'), el('td', s.completeness));
    body.append(tr);
  }
  const rules = $('rules');
  rules.replaceChildren();
  for (const r of result.rules || []) {
    if (!r.fired) continue;
    const inputs = (r.inputs || []).map((i) => `${i.name} = ${i.value}`).join(', ');
    const words = r.description || state.wording.get(`${result.rulesetVersion}/${r.ruleId}`);
    const li = el('li');
    li.append(el('span', words || r.ruleId, 'rule-words'));
    li.append(el('span', ` Because ${inputs} (${r.ruleId}: ${r.threshold}).`, 'meta'));
    rules.append(li);
  }
  if (!rules.children.length) rules.append(el('li', 'None.'));
  const secondary = $('secondary');
  secondary.replaceChildren();
  for (const f of (result.routing && result.routing.secondaryFlags) || []) secondary.append(el('li', f.text));
  if (!secondary.children.length) secondary.append(el('li', 'Nothing further.'));

  const mine = c.state === 'CLAIMED' && c.claimedBy === state.me.sub;
  const final = FINAL.has(c.state);
  $('claim').hidden = final || mine;
  $('claim').disabled = c.state === 'CLAIMED' && !mine;
  $('claim').textContent = c.state === 'CLAIMED' && !mine ? `Held by ${c.claimedBy}` : 'Claim';
  $('release').hidden = !mine;
  $('decide-form').hidden = !mine;
  renderLease();
  loadAudit(c.name);
}

function renderLease() {
  const c = state.cases.get(state.selected);
  const box = $('lease-box');
  if (!c) {
    box.textContent = '';
    return;
  }
  const mine = c.state === 'CLAIMED' && c.claimedBy === state.me.sub;
  if (mine) {
    const left = Math.round((Number(c.leaseExpireTimeMs) - Date.now()) / 1000);
    if (left > 0) {
      box.textContent = `Held by you: the lease ends in ${left} s.`;
      return;
    }
    // Run out by this page's clock: the service releases it at its next
    // sweep (an event then confirms it).
    state.expired.add(c.name);
    c.state = 'OPEN';
    c.claimedBy = '';
    $('claim').hidden = false;
    $('claim').disabled = false;
    $('claim').textContent = 'Claim';
    $('release').hidden = true;
    $('decide-form').hidden = true;
    renderQueue();
  }
  box.textContent = state.expired.has(c.name) && !FINAL.has(c.state) && c.state !== 'CLAIMED'
    ? 'Lease expired: the case is back in the queue.'
    : '';
}

async function loadAudit(name) {
  const list = $('audit');
  try {
    const res = await api('GET', `/v1/${name}/auditEvents?pageSize=100`);
    if (state.selected !== name) return;
    list.replaceChildren();
    for (const e of res.events || []) {
      const when = new Date(Number(e.timeMs)).toLocaleString();
      let text = `${when}: ${e.kind} by ${e.actor} (${e.actorRole})`;
      if (e.routeBefore !== e.routeAfter && e.routeAfter && e.routeAfter !== 'ROUTE_UNSPECIFIED') {
        text += `, ${ROUTES[e.routeBefore] || e.routeBefore} → ${ROUTES[e.routeAfter] || e.routeAfter}`;
      }
      list.append(el('li', text));
    }
  } catch (e) {
    showError(e);
  }
}

async function claim() {
  state.expired.delete(state.selected);
  try {
    const c = await api('POST', `/v1/${state.selected}:claim`, {
      requestId: requestId(),
      leaseSeconds: state.lease,
    });
    state.cases.set(c.name, c);
    renderQueue();
    renderCase(c);
    $('reason').focus();
  } catch (e) {
    showError(e);
  }
}

async function release() {
  try {
    const c = await api('POST', `/v1/${state.selected}:release`, { requestId: requestId() });
    state.cases.set(c.name, c);
    renderQueue();
    renderCase(c);
  } catch (e) {
    showError(e);
  }
}

async function decide(ev) {
  ev.preventDefault();
  const form = $('decide-form');
  const action = form.elements.action.value;
  const reason = $('reason').value.trim();
  const error = $('decide-error');
  if (!reason) {
    error.textContent = 'A reason is required for every decision.';
    $('reason').focus();
    return;
  }
  const c = state.cases.get(state.selected);
  const decision = { action, reason };
  if (action === 'CHANGE_ROUTE') decision.newRoute = $('new-route').value;
  try {
    const after = await api('POST', `/v1/${c.name}:decide`, {
      requestId: requestId(),
      etag: c.etag,
      decision,
    });
    error.textContent = '';
    $('reason').value = '';
    state.cases.set(after.name, after);
    renderQueue();
    renderCase(after);
  } catch (e) {
    error.textContent = e.message;
  }
}

function showError(e) {
  $('error').textContent = e && e.message ? e.message : String(e);
}

// ---- Wiring ----------------------------------------------------------------

document.addEventListener('DOMContentLoaded', () => {
  $('sign-in-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('sign-in-error').textContent = '';
    const token = $('token').value.trim().replace(/^Bearer\s+/i, '');
    const lease = Math.max(5, Number($('lease').value) || 600);
    try {
      await signIn(token, lease);
      $('token').value = '';
    } catch (e) {
      state.token = '';
      $('sign-in-error').textContent = e.status === 401 || e.status === 403
        ? 'That token was refused.'
        : e.message;
    }
  });
  $('sign-out').addEventListener('click', () => signOut(''));
  $('claim').addEventListener('click', claim);
  $('release').addEventListener('click', release);
  $('decide-form').addEventListener('submit', decide);
  for (const radio of document.querySelectorAll('input[name=action]')) {
    radio.addEventListener('change', () => {
      $('new-route').disabled = $('decide-form').elements.action.value !== 'CHANGE_ROUTE';
    });
  }
  const saved = sessionStorage.getItem('aqueduct.token');
  if (saved) {
    signIn(saved, Number(sessionStorage.getItem('aqueduct.lease')) || 600).catch(() => signOut(''));
  }
});
