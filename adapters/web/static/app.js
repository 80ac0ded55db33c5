// funnel-web's page: plain DOM over the JSON API, live through Server-Sent Events.
// Amounts arrive as decimal strings of minor units and are shown with BigInt, never floats.
'use strict';

const MODELS = ['first_touch', 'last_touch', 'linear', 'u_shaped', 'w_shaped', 'full_path',
  'time_decay', 'j_shaped', 'inverse_j'];
const $ = (id) => document.getElementById(id);
// The board reads and draws its first SLA_PAGE rows (by due time) and the next page after the
// last one drawn on request (the API's cursor); compliance the last 4 weeks unless asked for
// more: at 100,000 leads laying out every row (1,000 on the board, 1,900 in compliance) held the
// whole page for seconds, and at a million reading 1,000 rows cost more than the page needs.
const SLA_PAGE = 50;
const state = { me: null, sla: [], slaShown: SLA_PAGE, slaNext: null, slaTotal: 0, skew: 0, source: null,
  refresh: null };

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (opts.method && opts.method !== 'GET' && state.me && state.me.csrf)
    headers['X-CSRF-Token'] = state.me.csrf;
  const res = await fetch('/api/v1/' + path, Object.assign({ credentials: 'same-origin' }, opts,
    { headers }));
  const body = await res.json().catch(() => ({ error: res.statusText }));
  if (!res.ok) throw Object.assign(new Error(body.error || res.statusText),
    { status: res.status, retryAfter: Number(res.headers.get('Retry-After')) || 0 });
  return body;
}

// A GET that funnel-web answers 503 with Retry-After while it reads a report model at start:
// the section (box) says so and the read is tried again after the time it asks for.
async function apiWait(path, box) {
  for (;;) {
    try {
      return await api(path);
    } catch (e) {
      if (e.status !== 503 || !e.retryAfter) throw e;
      box.replaceChildren(el('p', { class: 'muted loading' }, `Loading: ${e.message}…`));
      await new Promise((r) => setTimeout(r, e.retryAfter * 1000));
    }
  }
}

function toast(text) {
  const t = $('toast');
  t.textContent = text;
  t.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('show'), 4000);
}

// ---- formatting ------------------------------------------------------------------------------

function digits(currency) {
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency })
      .resolvedOptions().maximumFractionDigits;
  } catch (e) { return 2; }
}

function money(minor, currency) {
  let v = BigInt(minor);
  const neg = v < 0n;
  if (neg) v = -v;
  const d = digits(currency), base = 10n ** BigInt(d);
  const whole = (v / base).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const frac = d ? '.' + (v % base).toString().padStart(d, '0') : '';
  return (neg ? '-' : '') + whole + frac + ' ' + currency;
}

function duration(ms) {
  if (ms == null) return '–';
  let s = Math.floor(Math.abs(Number(ms)) / 1000);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const two = (n) => String(n).padStart(2, '0');
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${two(m)}m`;
  return `${m}m ${two(s)}s`;
}

const now = () => Date.now() + state.skew;
const shown = (g) => (g === '' ? '(none)' : g);

// ---- SLA board -----------------------------------------------------------------------------

// The state a person sees: breached, at risk (the warning has fired) or open.
function slaClass(r) {
  if (r.state === 'breached' || (r.state === 'open' && Number(r.due_at_ms) <= now())) return 'breached';
  if (r.state === 'open' && r.step > 0) return 'risk';
  return r.state;
}

function dueText(r) {
  if (r.due_at_ms == null) return '–';
  const left = Number(r.due_at_ms) - now();
  return left >= 0 ? duration(left) : 'overdue ' + duration(-left);
}

// A page of the board: the live instances (open, at risk, breached) by due time, from after
// the cursor `after` (the `next` of the page before; null: from the first).
function slaPage(after, limit) {
  const q = new URLSearchParams({ state: 'live', order: 'due', limit });
  if ($('sla-policy').value) q.set('policy', $('sla-policy').value);
  if ($('sla-owner').value) q.set('owner', $('sla-owner').value);
  if (after) q.set('after', after);
  return api('sla?' + q);
}

function slaTake(data, rows) {
  state.skew = Number(data.now_ms) - Date.now();
  state.sla = rows;
  state.slaNext = data.next ?? null;
  state.slaTotal = data.total ?? rows.length;
  state.slaById = new Map(rows.map((r) => [r.sla_id, r]));
  renderSla();
}

// (Re)reads as many rows as the board shows, and the filters' choices: the policies and owners
// of every live instance, most of which are on no page read yet.
async function loadSla() {
  const [data, names] = await Promise.all([slaPage(null, state.slaShown), api('sla/filters')]);
  fillFilter('sla-policy', names.policies);
  fillFilter('sla-owner', names.owners);
  slaTake(data, data.instances);
}

// "Show more": the next page after the last row drawn.
async function moreSla() {
  const data = await slaPage(state.slaNext, SLA_PAGE);
  state.slaShown += SLA_PAGE;
  slaTake(data, state.sla.concat(data.instances));
}

function fillFilter(id, values) {
  const sel = $(id), have = new Set([...sel.options].map((o) => o.value));
  for (const v of [...new Set(values)].sort())
    if (!have.has(v)) sel.append(el('option', { value: v, text: v || '(none)' }));
}

function renderSla() {
  const body = $('sla-table').tBodies[0];
  const canAck = state.me.role !== 'rep';
  const shown = state.sla, left = state.slaTotal - shown.length;
  $('sla-count').textContent = shown.length ? `${shown.length} of ${state.slaTotal} shown` : '';
  $('sla-more').hidden = !state.slaNext || left <= 0;
  $('sla-more').textContent = `Show ${Math.min(left, SLA_PAGE)} more`;
  body.replaceChildren(...shown.map((r) => {
    const cls = slaClass(r);
    const level = cls === 'breached' && r.step > 1 ? 'level ' + (r.step - 1) : cls === 'breached' ? 'due' : '';
    const ack = r.acked_by ? r.acked_by : (cls === 'breached' && canAck
      ? el('button', { class: 'ack', type: 'button', 'data-sla': r.sla_id,
        'aria-label': `Acknowledge SLA ${r.sla_id} (${r.key})`, onclick: () => ackSla(r) },
        'Acknowledge')
      : '');
    return el('tr', { class: cls, 'data-sla': r.sla_id },
      el('td', { class: 'due', 'data-due': r.due_at_ms ?? '' }, dueText(r)),
      el('td', {}, el('span', { class: 'badge ' + cls }, cls === 'risk' ? 'at risk' : cls)),
      el('td', {}, r.policy), el('td', {}, r.key), el('td', {}, r.owner || '–'),
      el('td', { class: 'level' }, level),
      el('td', { class: 'acked' }, r.acked_by || ''),
      el('td', {}, typeof ack === 'string' ? '' : ack));
  }));
  $('sla-empty').hidden = state.sla.length > 0;
}

// Once a second: the countdowns of the rows drawn, and a row that crossed its due time changes
// colour.
function tick() {
  for (const tr of $('sla-table').tBodies[0].rows) {
    const r = state.slaById && state.slaById.get(tr.dataset.sla);
    if (!r) continue;
    tr.querySelector('.due').textContent = dueText(r);
    const cls = slaClass(r);
    if (tr.className !== cls) { renderSla(); return; }
  }
}

async function ackSla(r) {
  try {
    const res = await api(`sla/${r.sla_id}/ack`, { method: 'POST' });
    toast(`SLA ${r.sla_id} acknowledged by ${res.by}`);
  } catch (e) {
    toast('Acknowledge failed: ' + e.message);
  }
  // funneld commits the acknowledgement, then the row shows it: read it back.
  setTimeout(() => loadSla().catch(report), 300);
}

// ---- quota -------------------------------------------------------------------------------

const svgNS = 'http://www.w3.org/2000/svg';
function svgAdd(svg, tag, attrs, text) {
  const e = document.createElementNS(svgNS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text != null) e.textContent = text;
  svg.append(e);
  return e;
}

// The count so far through the period: funneld's per-day counts, each added at the end of its
// day (the part counted before per-day counts existed at the period's start), up to now.
function cumulative(p, until) {
  const pts = [[Number(p.period_start_ms), Number(p.before_days)]];
  let sum = Number(p.before_days);
  for (const d of p.days) {
    sum += d.count;
    pts.push([Math.min(Number(d.day_start_ms) + 86400000, until), sum]);
  }
  pts.push([until, sum]);
  return pts;
}

// The current period as a chart: the cumulative count against the minimum (a level line) and
// the pace line (0 at the start to the minimum at the end).
function quotaChart(q, p) {
  const start = Number(p.period_start_ms), end = Number(p.period_end_ms);
  const until = Math.min(Math.max(now(), start), end);
  const pts = cumulative(p, until);
  const W = 300, H = 120, L = 24, B = 14, top = Math.max(q.minimum, p.count) * 1.1;
  const x = (t) => L + ((t - start) / (end - start)) * (W - L - 4);
  const y = (v) => H - B - (v / top) * (H - B - 4);
  const svg = document.createElementNS(svgNS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `${q.name}: ${p.count} counted so far of ${q.minimum}; ` +
    `the pace line is at ${p.pace_expected_now} now`);
  svgAdd(svg, 'rect', { class: 'track', x: L, y: 4, width: W - L - 4, height: H - B - 4 });
  svgAdd(svg, 'line', { class: 'min', x1: L, x2: W - 4, y1: y(q.minimum), y2: y(q.minimum) });
  svgAdd(svg, 'line', { class: 'pace', x1: x(start), y1: y(0), x2: x(end), y2: y(q.minimum) });
  svgAdd(svg, 'line', { class: 'now', x1: x(until), x2: x(until), y1: 4, y2: H - B });
  // a step line: flat through each day, up at its end
  const d = pts.map(([t, v], i) => (i ? `H${x(t).toFixed(1)}V${y(v).toFixed(1)}` : `M${x(t).toFixed(1)} ${y(v).toFixed(1)}`)).join('');
  svgAdd(svg, 'path', { class: 'count' + (p.on_pace ? '' : ' behind'), d,
    'data-cumulative': pts.map((pt) => pt[1]).join(',') });
  svgAdd(svg, 'text', { x: 2, y: y(q.minimum) + 3 }, String(q.minimum));
  svgAdd(svg, 'text', { x: 2, y: H - B + 3 }, '0');
  svgAdd(svg, 'text', { x: L, y: H - 2 }, new Date(start).toISOString().slice(0, 10));
  svgAdd(svg, 'text', { x: W - 4, y: H - 2, 'text-anchor': 'end' }, new Date(end - 1).toISOString().slice(0, 10));
  return svg;
}

async function loadQuota() {
  const data = await api('quota');
  const box = $('quota-body');
  if (!data.quotas.length) { box.replaceChildren(el('p', { class: 'muted', text: 'No quotas configured.' })); return; }
  box.replaceChildren(...data.quotas.map((q) => {
    const p = q.current;
    if (!p) return el('p', { class: 'muted' }, `${q.name}: nothing counted this period yet.`);
    const start = Number(p.period_start_ms), end = Number(p.period_end_ms);
    const passed = Math.min(100, Math.max(0, Math.round(((now() - start) / (end - start)) * 100)));
    return el('div', { class: 'quota' },
      el('h3', {}, q.name),
      quotaChart(q, p),
      el('p', { class: 'muted' }, `${p.count} counted of ${q.minimum} minimum; pace line ${p.pace_expected_now} now ` +
        `(${passed}% of the period passed): ${p.on_pace ? 'on pace' : 'behind pace'}.` +
        (q.last ? ` Last period: ${q.last.count} of ${q.last.minimum}.` : '')));
  }));
}

// ---- funnel ------------------------------------------------------------------------------

function bars(rows) { // rows: [label, value, text]
  const max = Math.max(1, ...rows.map((r) => Math.abs(Number(r[1]))));
  const box = el('div', { class: 'bars' });
  for (const [label, v, text] of rows) {
    const b = el('div', { class: 'bar' + (Number(v) < 0 ? ' neg' : '') });
    b.style.width = (Math.abs(Number(v)) / max) * 100 + '%';
    box.append(el('span', {}, label), el('div', {}, b), el('span', { class: 'num' }, text));
  }
  return box;
}

async function loadFunnel() {
  const by = $('funnel-by').value;
  const box = $('funnel-body');
  const data = await apiWait('funnel?by=' + by, box);
  if (!data.rows.length) { box.replaceChildren(el('p', { class: 'muted', text: 'No leads yet.' })); return; }
  box.replaceChildren(...data.rows.map((r) => {
    const c = r.conversion_pct, pct = (v) => (v == null ? '–' : v + '%');
    const revenue = Object.entries(r.revenue).map(([cur, v]) => money(v, cur)).join(', ') || '–';
    return el('div', { class: 'funnel-group', 'data-group': r[by] },
      el('h3', {}, shown(r[by])),
      bars([['leads', r.leads, String(r.leads)], ['MQL', r.mql, `${r.mql} (${pct(c.lead_mql)})`],
        ['SQL', r.sql, `${r.sql} (${pct(c.mql_sql)})`], ['contacted', r.contacted, `${r.contacted} (${pct(c.sql_contacted)})`],
        ['won', r.won, `${r.won} (${pct(c.sql_won)})`], ['lost', r.lost, String(r.lost)]]),
      el('p', { class: 'muted' }, `Median MQL→SQL ${duration(r.median_ms.mql_sql)}, SQL→first contact ` +
        `${duration(r.median_ms.sql_contact)}, SQL→won ${duration(r.median_ms.sql_won)}. Revenue: ${revenue}`));
  }));
}

// ---- attribution -------------------------------------------------------------------------

async function loadAttribution() {
  // model=all has every model's column of the same rows: one read serves the bars and the
  // table (a second request would wait for a free connection beside the page's others).
  const all = await apiWait('attribution?by=campaign&model=all', $('attr-bars'));
  // Bars for the rows the model credits (model=all also lists a campaign that only other
  // models credit, with 0 in this one).
  const model = $('attr-model').value, credited = all.rows.filter((r) => BigInt(r.credits[model]) !== 0n);
  $('attr-bars').replaceChildren(credited.length
    ? bars(credited.map((r) => [`${shown(r.campaign)} (${r.currency})`, r.credits[model], money(r.credits[model], r.currency)]))
    : el('p', { class: 'muted', text: 'Nothing attributed yet.' }));
  $('attr-table').tHead.replaceChildren(el('tr', {}, el('th', {}, 'campaign'), el('th', {}, 'currency'),
    ...MODELS.map((m) => el('th', { class: 'num' + (m === model ? ' current' : '') }, m))));
  $('attr-table').tBodies[0].replaceChildren(...all.rows.map((r) => el('tr', {},
    el('td', {}, shown(r.campaign)), el('td', {}, r.currency),
    ...MODELS.map((m) => el('td', { class: 'num', 'data-model': m }, money(r.credits[m], r.currency))))));
}

// ---- compliance --------------------------------------------------------------------------

// The Monday (UTC) weeks - 1 weeks before this one's: the first day of the last `weeks` weeks.
function weeksBack(weeks) {
  const day = Math.floor(now() / 86400000), monday = day - ((day + 3) % 7);
  return new Date((monday - 7 * (weeks - 1)) * 86400000).toISOString().slice(0, 10);
}

async function loadCompliance() {
  const weeks = $('comp-weeks').value, q = new URLSearchParams({ by: 'owner', per: 'week' });
  if (weeks) q.set('from', weeksBack(Number(weeks)));
  const data = await api('sla/compliance?' + q);
  $('comp-table').tBodies[0].replaceChildren(...data.rows.map((r) => el('tr', {},
    el('td', {}, r.owner || '(none)'), el('td', {}, r.week),
    ...[r.instances, r.met_on_time, r.met_late, r.open, r.breached].map((v) => el('td', { class: 'num' }, String(v))),
    el('td', { class: 'num' }, r.on_time_pct == null ? '–' : r.on_time_pct + '%'),
    el('td', { class: 'num' }, duration(r.median_time_to_stop_ms)),
    el('td', { class: 'num' }, duration(r.p90_time_to_stop_ms)))));
}

// ---- statement ---------------------------------------------------------------------------

function statementPath(format) {
  const rep = encodeURIComponent($('st-rep').value.trim());
  const q = new URLSearchParams({ period: $('st-period').value });
  if (format) q.set('format', format);
  return `statements/${rep}?${q}`;
}

async function loadStatement() {
  const box = $('st-body');
  $('st-csv').href = '/api/v1/' + statementPath('csv');
  $('st-csv').setAttribute('download', `statement-${$('st-rep').value.trim()}-${$('st-period').value}.csv`);
  let st;
  try {
    st = await api(statementPath());
  } catch (e) {
    $('st-csv').hidden = true;
    box.replaceChildren(el('p', { class: 'muted' }, e.message));
    return;
  }
  $('st-csv').hidden = false;
  box.replaceChildren(...st.currencies.map((c) => el('div', { class: 'scroll' },
    el('h3', {}, c.currency + (c.reconciles ? '' : ' — does not reconcile')),
    el('table', { class: 'statement', 'data-currency': c.currency },
      el('tbody', {},
        el('tr', {}, el('th', {}, 'opening'), el('td', { class: 'num' }, money(c.opening, c.currency))),
        ...c.lines.map((l) => el('tr', {}, el('td', {}, new Date(Number(l.effective_ms)).toISOString().slice(0, 10) +
          ` ${l.kind.toLowerCase()} ${l.client_id || ''}`), el('td', { class: 'num' }, money(l.amount, c.currency)))),
        ...['accruals', 'clawbacks', 'payouts', 'closing'].map((k) =>
          el('tr', {}, el('th', {}, k), el('td', { class: 'num', 'data-total': k }, money(c[k], c.currency)))))))));
}

// ---- rejected (admins) -------------------------------------------------------------------

async function loadRejected() {
  const data = await api('rejected?limit=50');
  $('rej-table').tBodies[0].replaceChildren(...data.rejected.map((r) => el('tr', {},
    el('td', {}, new Date(Number(r.received_at_ms)).toISOString()), el('td', {}, r.topic),
    el('td', {}, r.event_id || ''), el('td', {}, r.reason || ''), el('td', {}, r.detail || ''))));
}

// ---- live --------------------------------------------------------------------------------

function follow() {
  const src = new EventSource('/api/v1/stream');
  state.source = src;
  src.onopen = () => $('live').classList.add('on');
  src.onerror = () => $('live').classList.remove('on');
  src.addEventListener('message', (ev) => {
    const m = JSON.parse(ev.data);
    if (m.topic.startsWith('sla.')) {
      if (m.topic === 'sla.escalation') {
        const e = m.message.slaEscalation;
        toast(`Escalation: ${e.sla.policy} ${e.sla.key} level ${e.level}`);
      }
      later('sla', loadSla);
      if (state.me.role !== 'rep') later('comp', loadCompliance);
    } else if (m.topic === 'commission.posted') {
      if ($('st-rep').value.trim()) later('st', loadStatement);
    } else if (state.me.role !== 'rep' && /^(lead|client|payment)\./.test(m.topic)) {
      later('funnel', loadFunnel);
      later('quota', loadQuota);
    } else if (m.topic === 'attribution.credited') {
      later('attr', loadAttribution);
    }
  });
}

// Coalesces a burst of messages into one reload per section.
const pending = {};
function later(key, fn) {
  if (pending[key]) return;
  pending[key] = setTimeout(() => { delete pending[key]; fn().catch(report); }, 150);
}

function report(e) {
  if (e && e.status === 401) { showLogin(); return; }
  toast(String(e && e.message ? e.message : e));
}

// ---- session -----------------------------------------------------------------------------

function showLogin() {
  if (state.source) state.source.close();
  $('app').hidden = true;
  $('logout').hidden = true;
  $('who').textContent = '';
  $('login').hidden = false;
  $('login-name').focus();
}

async function start(me) {
  state.me = me;
  $('login').hidden = true;
  $('app').hidden = false;
  $('logout').hidden = false;
  $('who').textContent = `${me.name} (${me.role})`;
  const manager = me.role !== 'rep';
  for (const s of document.querySelectorAll('.manager-only')) s.hidden = !manager;
  $('rejected').hidden = me.role !== 'admin';
  // A rep sees their own statement at once; a manager picks the rep first.
  $('st-rep').value = manager ? '' : me.name;
  $('st-rep').readOnly = !manager;
  $('st-period').value = new Date().toISOString().slice(0, 7);
  // Every section reads at once and renders when its own data arrive (data-filled marks it,
  // for the speed measurement), so a slow one holds back only itself.
  const loads = [['sla', loadSla]];
  if (!manager) loads.push(['statement', loadStatement]);
  if (manager) loads.push(['quota', loadQuota], ['funnel', loadFunnel], ['attribution', loadAttribution],
    ['compliance', loadCompliance]);
  if (me.role === 'admin') loads.push(['rejected', loadRejected]);
  const done = loads.map(([id, load]) => load().then(() => { $(id).dataset.filled = '1'; performance.mark('filled:' + id); }, report));
  follow();
  await Promise.all(done);
  // 'ready': every section has its data and is drawn into the DOM; 'painted': the frame after
  // it, i.e. its layout and paint done (the speed figures in README read both).
  performance.mark('ready');
  requestAnimationFrame(() => setTimeout(() => {
    performance.mark('painted');
    document.body.dataset.ready = '1';
  }, 0));
}

function init() {
  for (const m of MODELS) $('attr-model').append(el('option', { value: m, text: m.replace('_', ' ') }));
  $('attr-model').value = 'linear';
  $('attr-model').addEventListener('change', () => loadAttribution().catch(report));
  $('funnel-by').addEventListener('change', () => loadFunnel().catch(report));
  const filterSla = () => { state.slaShown = SLA_PAGE; loadSla().catch(report); };
  $('sla-policy').addEventListener('change', filterSla);
  $('sla-owner').addEventListener('change', filterSla);
  $('sla-more').addEventListener('click', () => moreSla().catch(report));
  $('comp-weeks').addEventListener('change', () => loadCompliance().catch(report));
  $('st-form').addEventListener('submit', (e) => { e.preventDefault(); loadStatement().catch(report); });
  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('login-error').textContent = '';
    try {
      const me = await api('login', { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ name: $('login-name').value, password: $('login-password').value }) });
      $('login-password').value = '';
      await start(me);
    } catch (err) {
      $('login-error').textContent = err.message;
    }
  });
  $('logout').addEventListener('click', async () => {
    await api('logout', { method: 'POST' }).catch(() => {});
    location.reload();
  });
  setInterval(tick, 1000);
  api('me').then((me) => (me.name ? start(me) : showLogin())).catch(report);
}

init();
