// Agora node dashboard. Served by the node itself; talks only to it.
//
// The API token is asked for once, kept in localStorage and sent as an
// `Authorization: Bearer` header, never in a URL. The node's state comes
// over `GET /v1/events` (server-sent events read with fetch, since
// EventSource cannot send headers); a job's log over its own stream,
// `GET /v1/jobs/{id}/stream`. Slow things are fetched: earnings and
// billing every 10 s (and when a receipt changes them), telemetry every
// 5 s unless the stream carries it.
'use strict';

(() => {
  const TOKEN_KEY = 'agora.api_token';
  const DAY = 86400000;
  const MAX_LOG_LINES = 5000;
  const MAX_HISTORY = 3600;
  const MAX_SAMPLES = 4096; // per GPU, like the node's own window
  const STALL_MS = 45000; // keep-alives come every 15 s
  const TROUBLE = new Set(['decline', 'lease_refused', 'no_bids', 'failed', 'provider_unresponsive',
    'results_failed', 'settlement_failed', 'receipt_refused']);

  const $ = (id) => document.getElementById(id);
  let token = null;
  let session = null; // AbortController of everything signed in
  const view = {
    node: null, jobs: null, provider: null, telemetry: null, telemetryInStream: false,
    earnings: null, billing: null, balance: null, history: [], selected: null, tab: null,
    bookQuery: { q: '', sort: '' },
  };

  // ---- the API ----

  class ApiError extends Error {
    constructor(status, body) {
      super(body && body.error ? body.error : `HTTP ${status}`);
      this.status = status;
      this.at = body && body.at;
    }
  }

  function headers(extra) {
    return Object.assign({ Authorization: `Bearer ${token}` }, extra || {});
  }

  async function api(path, signal) {
    const res = await fetch(path, { headers: headers(), cache: 'no-store', signal });
    if (!res.ok) {
      let body = null;
      try { body = await res.json(); } catch (_) { /* not JSON */ }
      throw new ApiError(res.status, body);
    }
    return res.json();
  }

  // ---- server-sent events, parsed here (the HTML standard's format) ----

  class SseParser {
    constructor(onEvent) {
      this.onEvent = onEvent;
      this.buf = '';
      this.afterCr = false;
      this.event = '';
      this.data = [];
      this.id = null;
    }

    push(chunk) {
      let text = chunk;
      if (this.afterCr && text.startsWith('\n')) text = text.slice(1);
      this.afterCr = false;
      this.buf += text;
      const lines = /\r\n|\n|\r/g;
      let start = 0;
      let m;
      while ((m = lines.exec(this.buf)) !== null) {
        if (m[0] === '\r' && m.index === this.buf.length - 1) this.afterCr = true;
        this.line(this.buf.slice(start, m.index));
        start = lines.lastIndex;
      }
      this.buf = this.buf.slice(start);
      if (this.buf.length > 4 << 20) throw new Error('an event-stream line exceeds 4 MiB');
    }

    line(line) {
      if (line === '') {
        if (this.data.length) {
          this.onEvent({ event: this.event || 'message', data: this.data.join('\n'), id: this.id });
        }
        this.event = '';
        this.data = [];
        return;
      }
      if (line[0] === ':') return; // a keep-alive
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value[0] === ' ') value = value.slice(1);
      if (field === 'event') this.event = value;
      else if (field === 'data') this.data.push(value);
      else if (field === 'id') this.id = value;
    }
  }

  // Reads one stream until it ends; a stall (no bytes, not even a
  // keep-alive, for STALL_MS) aborts it.
  async function follow(path, onEvent, signal) {
    const conn = new AbortController();
    const stop = () => conn.abort();
    signal.addEventListener('abort', stop);
    let stall = setTimeout(stop, STALL_MS);
    try {
      const res = await fetch(path, {
        headers: headers({ Accept: 'text/event-stream' }), cache: 'no-store', signal: conn.signal,
      });
      if (!res.ok) {
        let body = null;
        try { body = await res.json(); } catch (_) { /* not JSON */ }
        throw new ApiError(res.status, body);
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      const parser = new SseParser(onEvent);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        clearTimeout(stall);
        stall = setTimeout(stop, STALL_MS);
        parser.push(value);
      }
    } finally {
      clearTimeout(stall);
      signal.removeEventListener('abort', stop);
    }
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }

  async function runEvents(signal) {
    let delay = 1000;
    while (!signal.aborted) {
      try {
        await follow('/v1/events', (ev) => {
          delay = 1000;
          setLive(true);
          onEvent(ev);
        }, signal);
        if (!signal.aborted) showStreamError('the node closed its event stream (shutting down?); reconnecting');
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof ApiError && e.status === 401) { signOut(e.message); return; }
        showStreamError(`event stream: ${e.message}; reconnecting`);
      }
      setLive(false);
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 10000);
    }
  }

  function onEvent(ev) {
    let data;
    try { data = JSON.parse(ev.data); } catch (_) { return; }
    switch (ev.event) {
      case 'node': view.node = data; renderNode(); break;
      case 'jobs': {
        const before = view.jobs ? view.jobs.spent : null;
        view.jobs = data;
        renderJobs();
        if (before !== data.spent) refreshMoney('billing');
        break;
      }
      case 'provider': {
        const before = view.provider ? moneyKey(view.provider) : null;
        view.provider = data;
        view.history.push({ at: Date.now(), total: data.gpus.total, leased: data.gpus.leased, held: data.gpus.held });
        if (view.history.length > MAX_HISTORY) view.history.shift();
        renderProvider();
        if (before !== moneyKey(data)) refreshMoney('earnings');
        break;
      }
      case 'telemetry': view.telemetryInStream = true; mergeTelemetry(data); break;
      case 'error': showStreamError(data.error ? `the node: ${data.error}` : ''); break;
      default: break;
    }
    if (ev.event !== 'error' && $('stream-error').dataset.kind === 'stream') showStreamError('');
  }

  function moneyKey(p) {
    return `${p.status.earned}/${p.status.runs.map((r) => (r.receipt ? r.receipt.amount : 0)).join(',')}`;
  }

  // ---- slow things, fetched ----

  const timers = {};
  function refreshMoney(which) {
    clearTimeout(timers[which]);
    timers[which] = setTimeout(() => fetchMoney(which), 300);
  }

  async function fetchMoney(which) {
    if (!session) return;
    // The figures (24 h, 7 d, all time) do not depend on `since`; the
    // chart's hourly bars cover the last two days.
    const since = Date.now() - 2 * DAY;
    const path = which === 'earnings'
      ? `/v1/provider/earnings?bucket=hour&since=${since}` : `/v1/billing?bucket=hour&since=${since}`;
    if (which === 'earnings' && !isProvider()) return;
    try {
      view[which] = await api(path, session.signal);
    } catch (e) {
      if (session && session.signal.aborted) return;
      view[which] = { unavailable: e.status === 404 ? `unavailable (${e.message})` : `unavailable: ${e.message}` };
    }
    if (which === 'earnings') renderEarnings(); else renderBilling();
    if (which === 'billing') {
      try { view.balance = await api('/v1/ledger/balance', session.signal); } catch (_) { view.balance = null; }
      renderUsage();
    }
  }

  // The stream carries each GPU's latest sample; the window was fetched
  // once at sign-in.
  function mergeTelemetry(latest) {
    if (!view.telemetry) { view.telemetry = latest; renderTelemetry(); return; }
    for (const g of latest) {
      const have = view.telemetry.find((x) => x.index === g.index);
      if (!have) { view.telemetry.push(g); continue; }
      const lastAt = have.samples.length ? have.samples[have.samples.length - 1].at : -1;
      have.samples.push(...g.samples.filter((s) => s.at > lastAt));
      if (have.samples.length > MAX_SAMPLES) have.samples.splice(0, have.samples.length - MAX_SAMPLES);
      have.error = g.error;
    }
    view.telemetryError = null;
    renderTelemetry();
  }

  // The whole window: at sign-in, and every 5 s only from a node whose
  // stream carries no telemetry.
  async function fetchTelemetry(first) {
    if (!session || !isProvider() || (view.telemetryInStream && !first)) return;
    try {
      view.telemetry = await api('/v1/provider/telemetry', session.signal);
      view.telemetryError = null;
    } catch (e) {
      view.telemetry = null;
      view.telemetryError = e.status === 404 ? `telemetry unavailable (${e.message})` : `telemetry: ${e.message}`;
    }
    renderTelemetry();
  }

  function isProvider() { return view.node && view.node.role === 'provider'; }

  // ---- formatting ----

  function agr(units) {
    if (units === null || units === undefined) return '–';
    const whole = Math.floor(units / 1e6);
    const frac = String(units % 1e6).padStart(6, '0').replace(/0+$/, '');
    return `${whole.toLocaleString('en-US')}${frac ? `.${frac}` : ''} AGR`;
  }
  function short(id) { return id ? `${String(id).slice(0, 8)}…` : '–'; }
  function clock(ms) { return ms ? new Date(ms).toLocaleTimeString('en-GB', { hour12: false }) : '–'; }
  function dateTime(ms) {
    if (!ms) return '–';
    const d = new Date(ms);
    return `${d.toLocaleDateString('en-CA')} ${d.toLocaleTimeString('en-GB', { hour12: false })}`;
  }
  function ago(ms) {
    const s = Math.round((Date.now() - ms) / 1000);
    if (s < 0) return `in ${dur(-s)}`;
    return `${dur(s)} ago`;
  }
  function dur(s) {
    if (s < 120) return `${s} s`;
    if (s < 7200) return `${Math.round(s / 60)} min`;
    if (s < 172800) return `${Math.round(s / 3600)} h`;
    return `${Math.round(s / 86400)} d`;
  }
  function num(n) { return n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'); }
  function pct(a, b) { return b > 0 ? `${(100 * a / b).toFixed(1)} %` : '–'; }

  // ---- DOM helpers ----

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else if (k === 'title') e.title = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  function td(text, cls, title) { return el('td', { class: cls, title: title || null }, text); }
  function setText(id, text) { $(id).textContent = text; }
  function fill(id, nodes) { $(id).replaceChildren(...nodes); }
  const SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }
  function bar(part, whole, cls) {
    const i = el('i', { class: cls || null });
    i.style.width = `${whole > 0 ? Math.min(100, 100 * part / whole) : 0}%`;
    return el('span', { class: 'bar' }, i);
  }
  function stack(id, parts) {
    const total = parts.reduce((n, p) => n + p[1], 0);
    fill(id, parts.filter((p) => p[1] > 0).map(([cls, n, title]) => {
      const s = el('span', { class: cls, title: `${title}: ${n}` });
      s.style.width = `${total > 0 ? 100 * n / total : 0}%`;
      return s;
    }));
  }

  // A line (or area) over time; points are [ms, value].
  function sparkline(points, opts) {
    const w = opts.width || 200;
    const h = opts.height || 22;
    const s = svg('svg', { viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: 'none' });
    const vals = points.filter((p) => p[1] !== null && p[1] !== undefined);
    if (vals.length < 1) return s;
    const t0 = opts.t0 !== undefined ? opts.t0 : vals[0][0];
    const t1 = opts.t1 !== undefined ? opts.t1 : vals[vals.length - 1][0];
    const max = opts.max !== undefined ? opts.max : Math.max(1, ...vals.map((p) => p[1]));
    const x = (t) => (t1 > t0 ? (t - t0) / (t1 - t0) : 1) * w;
    const y = (v) => h - 1 - (Math.min(v, max) / max) * (h - 2);
    const d = vals.map((p, i) => {
      const px = x(p[0]).toFixed(1);
      const step = opts.step && i ? `L${px},${y(vals[i - 1][1]).toFixed(1)}` : '';
      return `${step}${i ? 'L' : 'M'}${px},${y(p[1]).toFixed(1)}`;
    }).join('');
    if (opts.area) {
      s.append(svg('path', {
        d: `${d}L${x(vals[vals.length - 1][0]).toFixed(1)},${h}L${x(vals[0][0]).toFixed(1)},${h}Z`,
        fill: opts.color || '#5fb3ff', 'fill-opacity': '0.25', stroke: 'none',
      }));
    }
    s.append(svg('path', { d, fill: 'none', stroke: opts.color || '#5fb3ff', 'stroke-width': '1.3', 'vector-effect': 'non-scaling-stroke' }));
    return s;
  }

  // ---- panels ----

  function renderNode() {
    const n = view.node;
    if (!n) return;
    setText('who', `${n.role} · ${short(n.peer_id)} · v${n.version}`);
    $('who').title = n.peer_id;
    $('tabs').hidden = false;
    if (!view.tab) showTab(location.hash.slice(1) || (n.role === 'provider' ? 'provider' : 'jobs'));
    const kv = (pairs) => pairs.flatMap(([k, v, title]) => [el('dt', { text: k }), el('dd', { title: title || null }, v)]);
    fill('node', kv([
      ['role', n.role],
      ['peer id', n.peer_id],
      ['account', n.account],
      ['version', n.version],
      ['listening', n.listen_addrs.join('\n') || '–'],
      ['market loop', `p50 ${n.market_loop.p50_us} µs · p99 ${n.market_loop.p99_us} µs · max ${n.market_loop.max_us} µs over ${num(n.market_loop.sampled)} of ${num(n.market_loop.events)} events`],
      ['task pool', `${n.tasks.running} running · ${n.tasks.queued} waiting (most ${n.tasks.most_queued}) · ${num(n.tasks.started)} started · ${n.tasks.refused} refused · ${n.tasks.lost} lost`],
    ]));
    const gossipOk = n.gossip_rejected === 0;
    fill('gossip', kv([
      ['connected peers', num(n.connected_peers)],
      ['offers-topic mesh', `${num(n.mesh_peers)} peers`],
      ['gossip accepted', num(n.gossip_accepted)],
      ['gossip rejected', el('span', { class: gossipOk ? null : 'error' }, num(n.gossip_rejected),
        gossipOk ? '' : ' (senders penalised by peer scoring)')],
      ['offers in book', num(n.offers_in_book)],
      ['health', n.connected_peers === 0 ? el('span', { class: 'error', text: 'no peers: this node hears no market' })
        : n.mesh_peers === 0 ? el('span', { class: 'error', text: 'connected, but no gossip mesh yet' }) : 'gossiping'],
    ]));
    if (view.bookSize !== n.offers_in_book) {
      view.bookSize = n.offers_in_book;
      if (view.tab === 'network') searchBook();
    }
    renderProblems();
  }

  function renderProvider() {
    const p = view.provider;
    $('not-provider').hidden = true;
    $('provider-panels').hidden = false;
    const s = p.status;
    setText('gpu-leased', num(p.gpus.leased));
    setText('gpu-held', num(p.gpus.held));
    setText('gpu-free', num(p.gpus.free));
    setText('gpu-total', num(p.gpus.total));
    stack('gpu-bar', [['leased', p.gpus.leased, 'leased'], ['held', p.gpus.held, 'held for a bid'], ['free', p.gpus.free, 'available']]);
    setText('nvml', s.nvml_unavailable ? `NVML: ${s.nvml_unavailable}` : s.driver ? `NVIDIA driver ${s.driver}` : 'simulated GPUs (declared in the config); no driver');
    $('runtime-unavailable').hidden = !s.runtime_unavailable;
    setText('runtime-unavailable', s.runtime_unavailable ? `runtime unavailable: ${s.runtime_unavailable} — neither offering nor bidding` : '');

    fill('offers', s.offers.map((o) => el('tr', {},
      td(o.slot), td(`${o.gpu_model}${o.simulated ? ' (simulated)' : ''}`), td(`${o.gpu_free}/${o.gpu_total}`),
      td(agr(o.price_per_gpu_hour)), td(o.runtimes.join(', ')), td(ago(o.expires_at), null, dateTime(o.expires_at)))));
    if (!s.offers.length) fill('offers', [el('tr', {}, el('td', { colspan: 6, class: 'muted', text: 'no live offer' }))]);

    setText('lease-active', num(p.leases.active));
    setText('lease-new', num(p.leases.new_24h));
    setText('lease-total', num(p.leases.total));
    fill('leases', s.leases.slice(0, 20).map((l) => el('tr', {},
      td(short(l.id), 'mono', l.id), td(`${l.gpu_count}× ${l.gpu_model}`), td(agr(l.price_per_gpu_hour)),
      td(agr(l.escrow)), td(l.status), td(clock(l.starts_at), null, dateTime(l.starts_at)))));

    const r = p.runs;
    setText('run-counts', `${r.running} running · ${r.waiting} waiting · ${r.succeeded} succeeded · ${r.failed} failed`);
    fill('runs', s.runs.slice(0, 30).map((run) => el('tr', {},
      td(short(run.lease_id), 'mono', run.lease_id), td(short(run.requester), 'mono', run.requester),
      td(run.state, `state ${run.state === 'ended' ? (run.exit_code === 0 && !run.reason ? 'succeeded' : 'failed') : 'running'}`),
      td(clock(run.started_at)), td(clock(run.ended_at)), td(run.exit_code === null ? '–' : run.exit_code),
      td(run.receipt ? num(run.receipt.gpu_seconds) : '–'), td(run.receipt ? agr(run.receipt.amount) : '–'),
      td(agr(run.settled)), td(run.reason || '', 'muted', run.reason || null))));
    renderUtilization();
    renderGpus();
    renderProblems();
    renderEvents();
  }

  function renderEarnings() {
    const e = view.earnings;
    const ids = ['earn-24h', 'earn-7d', 'earn-all', 'earn-settled'];
    if (!e || e.unavailable) {
      ids.forEach((id) => { setText(id, '–'); $(id).removeAttribute('data-amount'); });
      setText('earn-note', e ? `earnings ${e.unavailable}` : '');
      $('earn-chart').replaceChildren();
      return;
    }
    [['earn-24h', e.last_24h], ['earn-7d', e.last_7d], ['earn-all', e.all_time], ['earn-settled', e.settled]].forEach(([id, v]) => {
      setText(id, agr(v));
      $(id).setAttribute('data-amount', String(v));
    });
    setText('earn-note', `GET /v1/provider/earnings · ${e.buckets.length} ${e.bucket}ly buckets since ${dateTime(e.since)} · settled is what the ledger paid`);
    $('earn-chart').replaceChildren(bars(e.buckets, e.bucket === 'hour' ? 3600000 : DAY, e.since));
  }

  function bars(buckets, width, since) {
    const w = $('earn-chart').clientWidth || 500;
    const h = 90;
    const s = svg('svg', { viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: 'none' });
    // From the first bucket's start to the current bucket's end.
    const t0 = since - (since % width);
    const t1 = Date.now() - (Date.now() % width) + width;
    const max = Math.max(1, ...buckets.map((b) => b.amount));
    const x = (t) => ((t - t0) / (t1 - t0)) * w;
    const bw = Math.max(2, (width / (t1 - t0)) * w - 1);
    for (const b of buckets) {
      const bh = (b.amount / max) * (h - 14);
      const r = svg('rect', { x: x(b.start).toFixed(1), y: (h - 12 - bh).toFixed(1), width: bw.toFixed(1), height: bh.toFixed(1), fill: '#4cc38a' });
      const t = svg('title', {});
      t.textContent = `${dateTime(b.start)}: ${agr(b.amount)}, ${b.receipts} receipts, ${b.leases} leases`;
      r.append(t);
      s.append(r);
    }
    s.append(svg('line', { x1: 0, x2: w, y1: h - 12, y2: h - 12, stroke: '#263140' }));
    const l = svg('text', { x: 2, y: h - 1 });
    l.textContent = dateTime(t0).slice(0, 10);
    const r = svg('text', { x: w - 2, y: h - 1, 'text-anchor': 'end' });
    r.textContent = 'now';
    const m = svg('text', { x: 2, y: 10 });
    m.textContent = `max ${agr(max)}/${width === DAY ? 'day' : 'h'}`;
    s.append(l, r, m);
    return s;
  }

  function renderBilling() {
    const b = view.billing;
    const ids = ['bill-24h', 'bill-7d', 'bill-all', 'bill-settled'];
    if (!b || b.unavailable) {
      ids.forEach((id) => setText(id, '–'));
      setText('bill-note', b ? `billing ${b.unavailable}` : '');
      return;
    }
    [['bill-24h', b.last_24h], ['bill-7d', b.last_7d], ['bill-all', b.all_time], ['bill-settled', b.settled]].forEach(([id, v]) => {
      setText(id, agr(v));
      $(id).setAttribute('data-amount', String(v));
    });
    setText('bill-note', `GET /v1/billing · ${b.buckets.length} ${b.bucket}ly buckets since ${dateTime(b.since)}`);
  }

  function renderJobs() {
    const j = view.jobs;
    const states = Object.entries(j.states).map(([k, v]) => `${v} ${k.replace('_', ' ')}`).join(' · ');
    setText('job-counts', `${j.total} in all${states ? ` · ${states}` : ''}`);
    $('jobs-empty').hidden = j.total > 0;
    fill('jobs', j.jobs.map((job) => {
      const row = el('tr', { 'data-job': job.id, class: job.id === view.selected ? 'selected' : null },
        td(short(job.id), 'mono', job.id), td(job.name || '–'),
        el('td', { class: `state ${job.state}`, 'data-state': job.state, text: job.state.replace('_', ' ') }),
        td(`${job.bids} / ${job.declines}`, null, `${job.bids} bids, ${job.declines} declines`),
        td(job.provider ? short(job.provider) : '–', 'mono', job.provider),
        td(job.gpu_model ? `${job.gpus}× ${job.gpu_model}` : job.gpus),
        el('td', {}, bar(job.used_gpu_seconds, job.leased_gpu_seconds), `${num(job.used_gpu_seconds)} / ${num(job.leased_gpu_seconds)}`),
        td(agr(job.spent), 'spent'), td(job.settled === null ? '–' : agr(job.settled)),
        td(job.exit_code === null ? '–' : job.exit_code), td(job.reason || '', 'muted', job.reason || null));
      row.addEventListener('click', () => selectJob(job.id));
      return row;
    }));
    if (!view.selected && j.jobs.length) selectJob(j.jobs[0].id);
    fill('job-events', j.events.slice(0, 30).map(eventItem));
    renderUsage();
    renderEvents();
    renderProblems();
  }

  function renderUsage() {
    const j = view.jobs;
    if (!j) return;
    const used = j.jobs.reduce((n, x) => n + x.used_gpu_seconds, 0);
    const leased = j.jobs.reduce((n, x) => n + (x.leased_gpu_seconds || 0), 0);
    setText('use-used', num(used));
    setText('use-leased', num(leased));
    setText('use-pct', pct(used, leased));
    setText('balance', view.balance ? agr(view.balance.balance) : '–');
    stack('use-bar', [['used', used, 'GPU-s used'], ['free', Math.max(0, leased - used), 'GPU-s leased, not used']]);
  }

  function eventItem(e) {
    const cls = TROUBLE.has(e.event) ? (e.event === 'decline' ? 'warn' : 'bad') : null;
    return el('li', { class: cls }, el('time', { text: clock(e.at), title: dateTime(e.at) }),
      el('span', { class: 'what', text: e.event }),
      el('span', { class: 'mono muted', text: short(e.job), title: e.job }),
      el('span', { class: 'detail', text: e.detail || '', title: e.detail || null }));
  }

  function renderEvents() {
    const items = [];
    if (view.jobs) items.push(...view.jobs.events);
    if (view.provider) {
      for (const r of view.provider.status.runs) {
        if (r.started_at) items.push({ at: r.started_at, job: r.lease_id, event: 'run started', detail: `lease ${short(r.lease_id)}` });
        if (r.ended_at) {
          items.push({
            at: r.ended_at, job: r.lease_id, event: r.exit_code === 0 && !r.reason ? 'run ended' : 'failed',
            detail: r.reason || `exit ${r.exit_code}; settled ${agr(r.settled)}`,
          });
        }
      }
    }
    items.sort((a, b) => b.at - a.at);
    fill('events', items.slice(0, 40).map(eventItem));
  }

  function renderProblems() {
    const items = [];
    const add = (cls, what, detail) => items.push(el('li', { class: cls }, el('span', { class: 'what', text: what }), el('span', { class: 'detail', text: detail, title: detail })));
    const p = view.provider;
    if (p) {
      if (p.status.nvml_unavailable) add('warn', 'NVML', p.status.nvml_unavailable);
      if (p.status.runtime_unavailable) add('bad', 'runtime', p.status.runtime_unavailable);
      for (const r of p.status.runs) {
        if (r.state === 'ended' && (r.exit_code !== 0 || r.reason)) add('bad', 'run failed', `${short(r.lease_id)}: ${r.reason || `exit ${r.exit_code}`}`);
      }
      add(null, 'auction', `${num(p.status.orders_seen)} orders seen · ${num(p.status.bids_sent)} bids · ${num(p.status.declines_sent)} declines sent`);
    }
    const n = view.node;
    if (n) {
      add(n.gossip_rejected ? 'bad' : null, 'gossip', `${num(n.gossip_rejected)} messages rejected (forged, invalid or undecodable) of ${num(n.gossip_accepted + n.gossip_rejected)}`);
      if (n.tasks.refused || n.tasks.lost) add('bad', 'task pool', `${n.tasks.refused} refused, ${n.tasks.lost} lost`);
    }
    if (view.jobs) {
      for (const e of view.jobs.events) {
        if (TROUBLE.has(e.event)) add(e.event === 'decline' ? 'warn' : 'bad', e.event, `${short(e.job)}: ${e.detail || ''}`);
      }
    }
    fill('problems', items);
  }

  // GPU-seconds leased against available over the window: from the
  // telemetry's samples when the node serves them, else from what this
  // page saw of the reservations since it opened.
  function renderUtilization() {
    const series = [];
    let leasedSecs = 0;
    let availSecs = 0;
    let busy = null;
    let source;
    const tel = view.telemetry;
    if (tel && tel.length && tel.some((g) => g.samples.length > 0)) {
      source = 'from each GPU\'s telemetry samples (GET /v1/provider/telemetry); a sample holds until the next';
      // A step per GPU: each sample holds until that GPU's next one (the
      // last for one sampling interval, or until now).
      const gpus = tel.filter((g) => g.samples.length);
      const first = gpus[0].samples;
      const interval = first.length > 1 ? first[first.length - 1].at - first[first.length - 2].at : 5000;
      const times = [...new Set(gpus.flatMap((g) => g.samples.map((x) => x.at)))].sort((a, b) => a - b);
      const end = Math.min(Date.now(), times[times.length - 1] + interval);
      const at = gpus.map(() => -1);
      let busySum = 0;
      let busyN = 0;
      for (const t of times) {
        let leased = 0;
        let total = 0;
        let util = 0;
        let un = 0;
        gpus.forEach((g, i) => {
          while (at[i] + 1 < g.samples.length && g.samples[at[i] + 1].at <= t) at[i] += 1;
          if (at[i] < 0) return;
          const x = g.samples[at[i]];
          total += 1;
          if (x.leased) leased += 1;
          if (x.utilization_pct !== null && x.utilization_pct !== undefined) { util += x.utilization_pct; un += 1; }
        });
        series.push({ at: t, leased, total, util: un ? (util / un / 100) * total : null });
        if (un) { busySum += util / un; busyN += 1; }
      }
      for (let i = 0; i < series.length; i++) {
        const dt = ((i + 1 < series.length ? series[i + 1].at : end) - series[i].at) / 1000;
        availSecs += dt * series[i].total;
        leasedSecs += dt * series[i].leased;
      }
      series.push(Object.assign({}, series[series.length - 1], { at: end }));
      if (busyN) busy = busySum / busyN;
    } else if (view.history.length) {
      source = 'from the reservations this page has seen since it opened (no telemetry)';
      const h = view.history;
      const now = Date.now();
      for (let i = 0; i < h.length; i++) {
        const end = i + 1 < h.length ? h[i + 1].at : now;
        const dt = (end - h[i].at) / 1000;
        availSecs += dt * h[i].total;
        leasedSecs += dt * h[i].leased;
        series.push({ at: h[i].at, leased: h[i].leased, util: null, total: h[i].total });
      }
      series.push(Object.assign({}, series[series.length - 1], { at: now }));
    } else {
      return;
    }
    const fig = (v, label) => el('div', {}, el('b', { text: v }), el('span', { text: label }));
    fill('util-figures', [
      fig(num(Math.round(leasedSecs)), 'GPU-s leased'),
      fig(num(Math.round(Math.max(0, availSecs - leasedSecs))), 'GPU-s idle'),
      fig(pct(leasedSecs, availSecs), 'of capacity leased'),
      fig(busy === null ? 'n/a' : `${busy.toFixed(0)} %`, busy === null ? 'GPU busy (no NVML counters)' : 'GPU busy (NVML, mean)'),
    ]);
    setText('util-note', `Leased (blue) against capacity (grey); NVML utilization (green) where the GPUs report it. ${source}.`);
    const w = $('util-chart').clientWidth || 800;
    const hgt = 140;
    const s = svg('svg', { viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: 'none' });
    const t0 = series[0].at;
    const t1 = Math.max(series[series.length - 1].at, t0 + 1000);
    const max = Math.max(1, ...series.map((p) => p.total));
    const x = (t) => ((t - t0) / (t1 - t0)) * w;
    const y = (v) => hgt - 14 - (v / max) * (hgt - 24);
    // Steps: a value holds until the next point.
    const path = (pts) => pts.map((p, i) => {
      const px = x(p[0]).toFixed(1);
      return i ? `L${px},${y(pts[i - 1][1]).toFixed(1)}L${px},${y(p[1]).toFixed(1)}` : `M${px},${y(p[1]).toFixed(1)}`;
    }).join('');
    const cap = series.map((p) => [p.at, p.total]);
    s.append(svg('path', { d: `${path(cap)}L${w},${y(0)}L0,${y(0)}Z`, fill: '#2a3645', stroke: 'none' }));
    const leased = series.map((p) => [p.at, p.leased]);
    s.append(svg('path', { d: `${path(leased)}L${x(t1)},${y(0)}L0,${y(0)}Z`, fill: '#5fb3ff', 'fill-opacity': '0.55', stroke: '#5fb3ff' }));
    const util = series.filter((p) => p.util !== null).map((p) => [p.at, p.util]);
    if (util.length > 1) s.append(svg('path', { d: path(util), fill: 'none', stroke: '#4cc38a', 'stroke-width': '1.5' }));
    const label = (xx, yy, text, anchor) => {
      const t = svg('text', { x: xx, y: yy, 'text-anchor': anchor || 'start' });
      t.textContent = text;
      s.append(t);
    };
    label(2, hgt - 2, clock(t0));
    label(w - 2, hgt - 2, clock(t1), 'end');
    label(2, 10, `${max} GPU${max === 1 ? '' : 's'}`);
    $('util-chart').replaceChildren(s);
  }

  function renderGpus() {
    const p = view.provider;
    if (!p) return;
    const tel = new Map((view.telemetry || []).map((g) => [g.index, g]));
    fill('gpus', p.status.gpus.map((g) => {
      const t = tel.get(g.index);
      const samples = t ? t.samples : [];
      const last = samples[samples.length - 1];
      const leased = last ? last.leased : null;
      const head = el('div', { class: 'head' },
        el('span', {}, el('b', { text: `#${g.index} ${g.model}` }), ` ${Math.round(g.vram_mib / 1024)} GiB${g.power_limit_w ? ` · ${g.power_limit_w} W limit` : ''}`),
        el('span', { class: `badge ${leased ? 'leased' : ''}`, text: leased === null ? 'no samples' : leased ? 'leased' : 'idle' }));
      const card = el('div', { class: 'gpu', 'data-gpu': g.index }, head);
      if (g.simulated) {
        card.append(el('div', { class: 'muted small', text: 'simulated — no counters' }));
        if (samples.length) {
          card.append(metric('leased', samples.map((s) => [s.at, s.leased ? 1 : 0]), { max: 1, area: true, step: true }, leased ? 'leased' : 'idle'));
        }
      } else {
        const pick = (f) => samples.map((s) => [s.at, s[f]]);
        const val = (v, f) => (v === null || v === undefined ? 'n/a' : f(v));
        card.append(
          metric('utilization', pick('utilization_pct'), { max: 100, area: true, color: '#4cc38a' }, val(last && last.utilization_pct, (v) => `${v} %`)),
          metric('memory', pick('memory_used_mib'), { max: g.vram_mib || undefined, area: true }, val(last && last.memory_used_mib, (v) => `${(v / 1024).toFixed(1)} GiB`)),
          metric('temperature', pick('temperature_c'), { max: 100, color: '#e6b450' }, val(last && last.temperature_c, (v) => `${v} °C`)),
          metric('power', samples.map((s) => [s.at, s.power_mw === null ? null : s.power_mw / 1000]), { max: g.power_limit_w || undefined, color: '#b48cff' }, val(last && last.power_mw, (v) => `${(v / 1000).toFixed(0)} W`)),
        );
      }
      if (t && t.error) card.append(el('div', { class: 'error small', text: t.error }));
      return card;
    }));
    if (!p.status.gpus.length) fill('gpus', [el('p', { class: 'muted', text: p.status.nvml_unavailable || 'no GPUs' })]);
    setText('telemetry-note', view.telemetryError || (view.telemetry ? `${view.telemetry.reduce((n, g) => n + g.samples.length, 0)} samples (GET /v1/provider/telemetry${view.telemetryInStream ? ', over the event stream' : ''})` : ''));
  }

  function metric(name, points, opts, latest) {
    return el('div', { class: 'metric' }, el('span', { text: name }), sparkline(points, opts), el('b', { text: latest }));
  }

  function renderTelemetry() {
    renderGpus();
    renderUtilization();
  }

  // ---- a job's log ----

  let logAbort = null;
  function selectJob(id) {
    if (view.selected === id) return;
    view.selected = id;
    for (const row of $('jobs').children) row.classList.toggle('selected', row.dataset.job === id);
    if (logAbort) logAbort.abort();
    logAbort = new AbortController();
    const signal = logAbort.signal;
    session.signal.addEventListener('abort', () => logAbort && logAbort.abort(), { once: true });
    $('log').replaceChildren();
    setText('log-job', `${id} · GET /v1/jobs/${short(id)}/stream`);
    followLog(id, signal);
  }

  async function followLog(id, signal) {
    let after = 0;
    let ended = false;
    const pre = $('log');
    while (!signal.aborted && !ended) {
      try {
        await follow(`/v1/jobs/${encodeURIComponent(id)}/stream?after=${after}`, (ev) => {
          if (ev.event === 'end') {
            ended = true;
            let job = null;
            try { job = JSON.parse(ev.data); } catch (_) { /* ignore */ }
            appendLog(pre, el('span', { class: 'ev', text: `— end: ${job ? job.state : ''}${job && job.reason ? ` (${job.reason})` : ''}\n` }));
            return;
          }
          if (ev.event === 'error') { appendLog(pre, el('span', { class: 'err', text: `— ${ev.data}\n` })); ended = true; return; }
          let e;
          try { e = JSON.parse(ev.data); } catch (_) { return; }
          after = Math.max(after, e.seq);
          const text = e.text.endsWith('\n') ? e.text : `${e.text}\n`;
          const cls = e.kind === 'event' ? 'ev' : e.kind === 'stderr' ? 'err' : null;
          appendLog(pre, el('span', { class: 'seq', text: `${String(e.seq).padStart(4)} ${clock(e.at)} ` }),
            el('span', { class: cls, text: e.kind === 'event' ? `[${e.event || 'event'}] ${text}` : text }));
        }, signal);
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof ApiError && e.status === 401) { signOut(e.message); return; }
        if (e instanceof ApiError && e.status === 404) { appendLog(pre, el('span', { class: 'err', text: `— ${e.message}\n` })); return; }
      }
      if (!ended) await sleep(1000, signal);
    }
  }

  function appendLog(pre, ...nodes) {
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(...nodes);
    while (pre.childNodes.length > MAX_LOG_LINES * 2) pre.firstChild.remove();
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  // ---- the offer book ----

  async function searchBook() {
    const q = $('book-q').value.trim();
    const sort = $('book-sort').value;
    const params = new URLSearchParams({ q, limit: '200' });
    if (sort) params.set('sort', sort);
    try {
      const page = await api(`/v1/offers?${params}`, session.signal);
      setText('book-error', '');
      setText('book-size', `${page.offers.length} of ${page.book_size} offers match ${page.query ? `“${page.query}”` : 'everything'}`);
      fill('book', page.offers.map((o) => el('tr', {},
        td(short(o.id), 'mono', o.id), td(short(o.provider_peer), 'mono', o.provider_peer), td(o.gpu_model),
        td(`${Math.round(o.vram_mib / 1024)} GiB`), td((o.fp32_mtflops / 1000).toFixed(1)), td(`${o.gpu_free}/${o.gpu_total}`),
        td(agr(o.price_per_gpu_hour)), td(o.region + (o.jurisdiction ? `/${o.jurisdiction}` : '')), td(o.energy),
        td(o.simulated ? 'simulated' : o.verified ? 'measured' : 'declared'))));
    } catch (e) {
      if (session.signal.aborted) return;
      setText('book-error', e.at && !e.message.includes(e.at) ? `${e.message} (at ${e.at})` : e.message);
    }
  }

  // ---- tabs, status ----

  function showTab(name) {
    if (!['provider', 'jobs', 'network'].includes(name)) name = 'jobs';
    view.tab = name;
    for (const b of $('tabs').querySelectorAll('button')) b.classList.toggle('active', b.dataset.tab === name);
    for (const s of document.querySelectorAll('.tab')) s.hidden = s.id !== `tab-${name}`;
    if (history.replaceState) history.replaceState(null, '', `#${name}`);
    if (name === 'provider' && !isProvider()) {
      $('not-provider').hidden = false;
      $('provider-panels').hidden = true;
    }
    if (name === 'network') searchBook();
    if (name === 'provider') { renderUtilization(); renderEarnings(); }
  }

  function setLive(on) {
    const live = $('live');
    live.textContent = on ? 'live' : 'reconnecting';
    live.className = `pill ${on ? 'on' : 'off'}`;
  }

  function showStreamError(text) {
    const b = $('stream-error');
    b.textContent = text;
    b.hidden = !text;
    b.dataset.kind = text ? 'stream' : '';
  }

  // ---- signing in and out ----

  function showLogin(error) {
    $('app').hidden = true;
    $('tabs').hidden = true;
    $('signout').hidden = true;
    $('login').hidden = false;
    setText('who', '');
    setText('login-error', error || '');
    $('token').value = '';
    $('token').focus();
    setLive(false);
    $('live').textContent = 'signed out';
  }

  async function signIn(candidate, remember) {
    token = candidate;
    try {
      view.node = await api('/v1/node');
    } catch (e) {
      token = null;
      if (e.status === 401) localStorage.removeItem(TOKEN_KEY);
      showLogin(e.status === 401 ? `${e.message}` : `the node did not answer: ${e.message}`);
      return;
    }
    if (remember) localStorage.setItem(TOKEN_KEY, candidate);
    start();
  }

  function start() {
    session = new AbortController();
    $('login').hidden = true;
    $('app').hidden = false;
    $('signout').hidden = false;
    renderNode();
    runEvents(session.signal);
    fetchMoney('earnings');
    fetchMoney('billing');
    fetchTelemetry(true);
    const slow = setInterval(() => { fetchMoney('earnings'); fetchMoney('billing'); }, 10000);
    const tel = setInterval(() => fetchTelemetry(false), 5000);
    session.signal.addEventListener('abort', () => { clearInterval(slow); clearInterval(tel); });
  }

  function signOut(error) {
    if (session) session.abort();
    session = null;
    token = null;
    localStorage.removeItem(TOKEN_KEY);
    Object.assign(view, {
      node: null, jobs: null, provider: null, telemetry: null, telemetryInStream: false, earnings: null,
      billing: null, balance: null, history: [], selected: null, tab: null, bookSize: undefined,
    });
    for (const id of ['jobs', 'log', 'runs', 'leases', 'offers', 'gpus', 'events', 'problems', 'book', 'job-events']) $(id).replaceChildren();
    showLogin(error);
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const candidate = $('token').value.trim();
      if (!candidate) { setText('login-error', 'paste the token from the node\'s api.token'); return; }
      signIn(candidate, true);
    });
    $('signout').addEventListener('click', () => signOut(''));
    $('book-form').addEventListener('submit', (e) => { e.preventDefault(); searchBook(); });
    $('book-sort').addEventListener('change', searchBook);
    for (const b of $('tabs').querySelectorAll('button')) b.addEventListener('click', () => showTab(b.dataset.tab));
    window.addEventListener('resize', () => { if (view.tab === 'provider') { renderUtilization(); renderEarnings(); } });
    const stored = localStorage.getItem(TOKEN_KEY);
    if (stored) signIn(stored, false); else showLogin('');
  });
})();
