/*
 * pushservice console: sites, pushes with live progress, dead letters, realtime presence.
 *
 * Everything comes from pushapi's own routes (see /openapi.json) with the token the operator
 * typed, kept in this tab's sessionStorage and sent as `Authorization: Bearer`; never a
 * cookie, never a URL. Progress is the push's Server-Sent Events stream, read with fetch()
 * (EventSource cannot send a header). No framework: DOM built with textContent only, so no
 * value from the API is ever parsed as HTML.
 */
(function () {
  'use strict';

  const TOKEN_KEY = 'pushservice.console.token';
  const PUSHES_EVERY_MS = 5000;
  const SITES_EVERY_MS = 30000;
  const REALTIME_EVERY_MS = 5000;
  const DLQ_EVERY_MS = 60000;
  /** Progress samples kept for the charts (one a second: ten minutes). */
  const MAX_SAMPLES = 600;
  const COLORS = { accepted: '#3fbf7f', unsubscribed: '#b08cff', failed: '#ef6461', canceled: '#8d97a5', rate: '#5aa9ff', acks: '#e5b454' };

  const $ = (id) => document.getElementById(id);
  const state = {
    token: null,
    admin: false,
    sites: [],
    sitesNext: null,
    site: null,
    pushes: [],
    push: null,
    follow: null,
    samples: [],
    timers: [],
    dlqAll: false,
  };

  // ---- helpers -------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'dataset') Object.assign(node.dataset, v);
      // Through the CSSOM: the Content-Security-Policy refuses style attributes.
      else if (k === 'style') Object.assign(node.style, v);
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (const child of children.flat()) {
      if (child == null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const fmt = new Intl.NumberFormat('en-US');
  function num(n) { return n == null ? '—' : fmt.format(n); }
  function cell(n, cls) {
    return el('td', { class: 'n' + (n === 0 ? ' zero' : '') + (cls ? ' ' + cls : '') }, num(n));
  }
  function pad(n) { return String(n).padStart(2, '0'); }
  function when(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    const today = new Date();
    const time = pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
    if (d.toDateString() === today.toDateString()) return time;
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + time;
  }
  function duration(seconds) {
    if (!isFinite(seconds) || seconds < 0) return '—';
    if (seconds < 90) return Math.round(seconds) + ' s';
    if (seconds < 5400) return Math.round(seconds / 60) + ' min';
    return (seconds / 3600).toFixed(1) + ' h';
  }
  function settledOf(t) { return (t.accepted || 0) + (t.unsubscribed || 0) + (t.failed || 0) + (t.canceled || 0); }
  /** Deliveries made: what a push service answered (canceled ones were never sent). */
  function deliveredOf(t) { return (t.accepted || 0) + (t.unsubscribed || 0) + (t.failed || 0); }
  /**
   * What a push's progress is measured against: its deliveries fanned out, or everyone it
   * will reach once known (a canceled push counts the subscribers it never reached as
   * canceled); while a push to every subscriber is fanned out, the site's subscriber count.
   */
  function expectedOf(push) {
    const t = push.totals;
    let expected = Math.max(t.sent || 0, settledOf(t));
    if (push.status === 'processing' && !push.audience && state.site && state.site.id === push.siteId && state.site.subscribers) {
      expected = Math.max(expected, state.site.subscribers.total || 0);
    }
    return expected;
  }
  function isLive(push) { return push && !push.final && (push.status === 'pending' || push.status === 'processing' || push.status === 'canceled'); }

  function setHealth(ok, text) {
    const health = $('health');
    health.className = 'health ' + (ok ? 'ok' : 'bad');
    health.textContent = text;
  }

  // ---- API -------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  async function api(path, { method = 'GET', body, signal } = {}) {
    const headers = { Authorization: 'Bearer ' + state.token, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal, cache: 'no-store', credentials: 'omit' });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      setHealth(false, 'API unreachable');
      throw new ApiError(0, 'unreachable', 'pushapi did not answer: ' + e.message);
    }
    const text = await response.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
    if (response.status === 401) {
      signOut('The token was refused (401): ' + ((json && json.error && json.error.message) || 'unauthorized'));
      throw new ApiError(401, 'unauthorized', 'signed out');
    }
    if (!response.ok) {
      const error = (json && json.error) || {};
      throw new ApiError(response.status, error.code || 'http_' + response.status, error.message || ('HTTP ' + response.status));
    }
    setHealth(true, 'updated ' + when(new Date().toISOString()));
    return json;
  }

  /** Follows `/v1/pushes/{id}/progress` (SSE over fetch); calls onPush with each view. */
  function follow(pushId, onPush) {
    const controller = new AbortController();
    let stopped = false;
    (async () => {
      while (!stopped) {
        let ended = false;
        try {
          const response = await fetch('/v1/pushes/' + pushId + '/progress', {
            headers: { Authorization: 'Bearer ' + state.token, Accept: 'text/event-stream' },
            signal: controller.signal, cache: 'no-store', credentials: 'omit',
          });
          if (response.status === 401) { signOut('The token was refused (401)'); return; }
          if (!response.ok || !response.body) throw new Error('HTTP ' + response.status);
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = '';
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value;
            let cut;
            while ((cut = buffer.indexOf('\n\n')) >= 0) {
              const block = buffer.slice(0, cut);
              buffer = buffer.slice(cut + 2);
              let event = 'message';
              const data = [];
              for (const line of block.split('\n')) {
                if (line.startsWith('event:')) event = line.slice(6).trim();
                else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
              }
              if (data.length === 0) continue;
              if (event === 'progress' || event === 'end') onPush(JSON.parse(data.join('\n')));
              if (event === 'end') ended = true;
              if (event === 'error') throw new Error(JSON.parse(data.join('\n')).error.message);
            }
          }
        } catch (e) {
          if (stopped || e.name === 'AbortError') return;
          $('detail-message').textContent = 'Progress stream interrupted (' + e.message + '); reconnecting…';
        }
        if (ended) return;
        await new Promise((r) => setTimeout(r, 2000));
      }
    })();
    return { stop() { stopped = true; controller.abort(); } };
  }

  // ---- sign in / out ------------------------------------------------------------------

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    stopAll();
    $('app').hidden = true;
    $('signout').hidden = true;
    $('who').textContent = '';
    $('health').textContent = '';
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    $('token').value = '';
    $('token').focus();
  }

  function stopAll() {
    state.timers.forEach(clearInterval);
    state.timers = [];
    if (state.follow) state.follow.stop();
    state.follow = null;
  }

  async function signIn(token) {
    state.token = token;
    // A site key names its site (psk_<site id>_...); anything else is tried as the admin token.
    const site = /^psk_([0-9a-f]{24})_/.exec(token);
    state.admin = !site;
    try {
      await loadSites(false);
    } catch (e) {
      if (e.status !== 401) {
        state.token = null;
        $('login-error').textContent = e.message;
      }
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $('login').hidden = true;
    $('app').hidden = false;
    $('signout').hidden = false;
    $('who').textContent = state.admin ? 'admin — every site' : 'site key — site ' + site[1];
    $('dlq-all-label').hidden = !state.admin;
    state.timers.push(setInterval(() => loadSites(false).catch(report), SITES_EVERY_MS));
    state.timers.push(setInterval(() => loadPushes().catch(report), PUSHES_EVERY_MS));
    state.timers.push(setInterval(() => loadRealtime().catch(report), REALTIME_EVERY_MS));
    state.timers.push(setInterval(() => loadDeadLetters().catch(report), DLQ_EVERY_MS));
    if (state.sites.length > 0) selectSite(state.sites[0]);
  }

  function report(e) {
    if (e && e.status === 401) return;
    if (e && e.name === 'AbortError') return;
    setHealth(false, e.message || String(e));
  }

  // ---- sites --------------------------------------------------------------------------

  async function loadSites(more) {
    const after = more && state.sitesNext ? '&after=' + state.sitesNext : '';
    const page = await api('/v1/sites?limit=100' + after);
    state.sites = more ? state.sites.concat(page.sites) : page.sites;
    state.sitesNext = page.next;
    if (state.site) {
      const fresh = state.sites.find((s) => s.id === state.site.id);
      if (fresh) state.site = fresh;
    }
    renderSites();
  }

  function renderSites() {
    const body = $('sites-body');
    body.replaceChildren();
    if (state.sites.length === 0) body.append(el('tr', {}, el('td', { class: 'empty', colspan: 6 }, 'No sites yet (POST /v1/sites with the admin token).')));
    for (const site of state.sites) {
      const s = site.subscribers || {};
      body.append(el('tr', {
        class: 'pick' + (state.site && state.site.id === site.id ? ' selected' : ''),
        dataset: { site: site.id },
        title: site.subject,
        onclick: () => selectSite(site),
      },
      el('td', { class: 'grow' }, el('span', { class: 'mono' }, site.id.slice(-8)), ' ', el('span', { class: 'muted' }, site.subject.replace(/^(mailto:|https:\/\/)/, ''))),
      cell(s.web), cell(s.ios), cell(s.android), cell(s.total), cell(s.unsubscribed)));
    }
    $('sites-count').textContent = state.sites.length + (state.sitesNext ? '+' : '');
    $('sites-more').hidden = !state.sitesNext;
  }

  function selectSite(site) {
    state.site = site;
    state.pushes = [];
    closeDetail();
    renderSites();
    $('site').hidden = false;
    $('site-title').textContent = 'Site ' + site.id;
    $('site-subject').textContent = site.subject + (site.allowedOrigins.length ? ' · ' + site.allowedOrigins.join(', ') : '');
    $('pushes-body').replaceChildren();
    $('dlq-body').replaceChildren();
    $('rt-body').replaceChildren();
    loadPushes().catch(report);
    loadRealtime().catch(report);
    loadDeadLetters().catch(report);
  }

  // ---- pushes -------------------------------------------------------------------------

  async function loadPushes() {
    if (!state.site) return;
    const siteId = state.site.id;
    const page = await api('/v1/sites/' + siteId + '/pushes?limit=15');
    if (!state.site || state.site.id !== siteId) return;
    state.pushes = page.pushes;
    renderPushes();
  }

  function progressBar(push, big) {
    const totals = push.totals;
    const sent = expectedOf(push);
    const bar = el('div', {});
    for (const key of ['accepted', 'unsubscribed', 'failed', 'canceled']) {
      const share = sent > 0 ? Math.min(100, (100 * (totals[key] || 0)) / sent) : 0;
      if (share > 0) bar.append(el('div', { class: 'seg-' + key, style: { width: share.toFixed(2) + '%' }, title: key + ' ' + num(totals[key]) }));
    }
    const percent = sent > 0 ? Math.floor((100 * settledOf(totals)) / sent) : 0;
    return el('div', { class: 'progress' + (big ? ' big' : '') }, bar, el('span', {}, sent > 0 ? percent + '%' : ''));
  }

  function renderPushes() {
    const body = $('pushes-body');
    body.replaceChildren();
    if (state.pushes.length === 0) body.append(el('tr', {}, el('td', { class: 'empty', colspan: 10 }, 'No pushes for this site yet.')));
    for (const push of state.pushes) {
      const t = push.totals;
      const actions = el('td', {});
      if (push.status === 'pending') actions.append(el('button', { type: 'button', onclick: (e) => { e.stopPropagation(); sendPush(push); } }, 'Send'));
      if (push.status === 'pending' || push.status === 'processing') {
        actions.append(' ', el('button', { type: 'button', class: 'danger', onclick: (e) => { e.stopPropagation(); cancelPush(push); } }, 'Cancel'));
      }
      body.append(el('tr', {
        class: 'pick' + (state.push && state.push.id === push.id ? ' selected' : ''),
        dataset: { push: push.id, status: push.status },
        onclick: () => openPush(push),
      },
      el('td', { class: 'mono' }, when(push.createdAt)),
      el('td', { class: 'grow', title: push.title }, push.title),
      el('td', {}, el('span', { class: 'status ' + push.status }, push.status)),
      el('td', {}, progressBar(push, false)),
      cell(t.sent), cell(t.accepted), cell(t.unsubscribed), cell(t.failed, t.failed > 0 ? 'bad' : ''), cell(t.canceled),
      actions));
    }
  }

  async function sendPush(push) {
    try {
      const sent = await api('/v1/pushes/' + push.id + '/send', { method: 'POST' });
      await loadPushes();
      openPush(sent);
    } catch (e) { showDetailError(e); }
  }

  async function cancelPush(push) {
    if (!window.confirm('Cancel push "' + push.title + '"?\nDeliveries not yet made are dropped; this cannot be undone.')) return;
    try {
      const canceled = await api('/v1/pushes/' + push.id + '/cancel', { method: 'POST' });
      if (state.push && state.push.id === push.id) showPush(canceled);
      await loadPushes();
      if (state.push && state.push.id === push.id && !state.follow) startFollow(push.id);
    } catch (e) { showDetailError(e); }
  }

  function showDetailError(e) {
    if (e.status === 401) return;
    $('detail').hidden = false;
    $('detail-message').textContent = e.message;
  }

  function closeDetail() {
    if (state.follow) state.follow.stop();
    state.follow = null;
    state.push = null;
    state.samples = [];
    $('detail').hidden = true;
  }

  function openPush(push) {
    const same = state.push && state.push.id === push.id;
    if (!same) {
      closeDetail();
      state.samples = [];
    }
    $('detail').hidden = false;
    $('detail-message').textContent = '';
    showPush(push);
    renderPushes();
    if (!state.follow && isLive(push)) startFollow(push.id);
    if (!isLive(push)) {
      // A finished push: its final figures once, with live totals.
      api('/v1/pushes/' + push.id).then((p) => { if (state.push && state.push.id === p.id) showPush(p); }).catch(report);
    }
  }

  function startFollow(pushId) {
    state.follow = follow(pushId, (p) => {
      if (!state.push || state.push.id !== p.id) return;
      showPush(p);
      if (p.final) {
        state.follow = null;
        loadPushes().catch(report);
      }
    });
    $('detail-live').className = 'live on';
    $('detail-live').textContent = 'live';
  }

  function showPush(push) {
    state.push = push;
    const t = push.totals;
    const settled = settledOf(t);
    const now = Date.now();
    const last = state.samples[state.samples.length - 1];
    if (!last || now - last.t >= 500) {
      state.samples.push({ t: now, settled, delivered: deliveredOf(t), accepted: t.accepted, unsubscribed: t.unsubscribed, failed: t.failed, canceled: t.canceled, sent: t.sent });
      if (state.samples.length > MAX_SAMPLES) state.samples.shift();
    }
    const detail = $('detail');
    detail.dataset.push = push.id;
    detail.dataset.status = push.status;
    detail.dataset.settled = String(settled);
    detail.dataset.sent = String(t.sent);
    detail.dataset.final = String(Boolean(push.final));

    $('detail-title').textContent = push.title;
    $('detail-title').title = push.id;
    const status = $('detail-status');
    status.className = 'status ' + push.status;
    status.textContent = push.status + (push.final ? '' : push.status === 'canceled' ? ' · settling' : '');
    if (push.final || !state.follow) {
      $('detail-live').className = 'live';
      $('detail-live').textContent = push.final ? 'final' : '';
    }
    $('detail-send').hidden = push.status !== 'pending';
    $('detail-send').onclick = () => sendPush(push);
    $('detail-cancel').hidden = !(push.status === 'pending' || push.status === 'processing');
    $('detail-cancel').onclick = () => cancelPush(push);

    const expected = expectedOf(push);
    const bar = progressBar(push, true);
    $('detail-bar').replaceChildren(...bar.firstChild.childNodes);
    $('detail-bar').style.width = '100%';
    $('detail-percent').textContent = expected > 0 ? Math.floor((100 * settled) / expected) + '% · ' + num(settled) + ' of ' + num(expected) + ' settled' : 'nothing sent yet';

    // A final push delivers nothing more: no rate to show.
    const rate = push.final ? null : currentRate();
    const pending = Math.max(0, (t.sent || 0) - settled);
    const remaining = Math.max(0, expected - settled);
    const figures = [
      ['Sent', t.sent], ['Accepted', t.accepted, 'ok'], ['Unsub.', t.unsubscribed, 'gone'],
      ['Failed', t.failed, t.failed > 0 ? 'bad' : ''], ['Canceled', t.canceled, t.canceled > 0 ? 'warn' : ''],
      ['Pending', pending], ['Rate /s', rate == null ? null : Math.round(rate)],
      ['ETA', push.status === 'processing' && rate > 0 ? duration(remaining / rate) : '—'],
      ['Fanned out', push.fanout ? push.fanout.produced : null], ['Delivered', t.delivered], ['Clicked', t.clicked],
    ];
    $('detail-figures').replaceChildren(...figures.map(([name, value, cls]) => el('div', { class: cls || '', dataset: { figure: name.toLowerCase().replace(/[^a-z]/g, '') } },
      el('dt', {}, name), el('dd', {}, typeof value === 'string' ? value : num(value)))));
    $('rate-now').textContent = rate == null ? '' : 'now ' + num(Math.round(rate)) + '/s';

    const failures = push.deliveryFailures || [];
    $('detail-failures').replaceChildren(...(failures.length ? [el('table', { class: 'grid' },
      el('thead', {}, el('tr', {}, el('th', {}, 'Failure reason'), el('th', { class: 'n' }, 'Count'))),
      el('tbody', {}, failures.map((f) => el('tr', {}, el('td', { title: f.reason }, f.reason), cell(f.count)))))] : []));
    drawCharts();
  }

  /** Deliveries settled per second over the last ~5 s of samples. */
  function currentRate() {
    const s = state.samples;
    if (s.length < 2) return null;
    const last = s[s.length - 1];
    let first = s[s.length - 2];
    for (let i = s.length - 2; i >= 0 && last.t - s[i].t <= 5000; i--) first = s[i];
    const dt = (last.t - first.t) / 1000;
    return dt > 0 ? Math.max(0, (last.delivered - first.delivered) / dt) : null;
  }

  function drawCharts() {
    const s = state.samples;
    const rate = [];
    for (let i = 1; i < s.length; i++) {
      const dt = (s[i].t - s[i - 1].t) / 1000;
      if (dt > 0) rate.push([s[i].t, Math.max(0, (s[i].delivered - s[i - 1].delivered) / dt)]);
    }
    window.ConsoleChart.draw($('chart-rate'), {
      series: [{ name: 'deliveries/s', color: COLORS.rate, points: rate }],
      empty: 'deliveries per second appear here while the push is followed',
    });
    const keys = ['accepted', 'unsubscribed', 'failed', 'canceled'];
    window.ConsoleChart.draw($('chart-outcomes'), {
      stacked: true,
      series: keys.map((k) => ({ name: k, color: COLORS[k], points: s.map((x) => [x.t, x[k] || 0]) })),
      empty: 'outcomes appear here while the push is followed',
    });
    $('outcome-legend').replaceChildren(...keys.flatMap((k) => [el('i', { style: { background: COLORS[k] } }), k]));
  }

  // ---- dead letters ---------------------------------------------------------------------

  function dlqPath(suffix) {
    return (state.admin && state.dlqAll ? '/v1/dead-letters' : '/v1/sites/' + state.site.id + '/dead-letters') + suffix;
  }

  async function loadDeadLetters() {
    if (!state.site) return;
    $('dlq-message').textContent = 'reading the dead-letter topic…';
    const siteId = state.site.id;
    const summary = await api(dlqPath(''));
    if (!state.site || state.site.id !== siteId) return;
    $('dlq-message').textContent = '';
    $('dlq-scope').textContent = summary.siteId ? 'this site' : 'every site';
    $('dlq-summary').textContent = 'Topic ' + summary.topic + ': ' + (summary.total === 0
      ? 'no dead letters.'
      : num(summary.total) + ' dead letters, ' + num(summary.replayed) + ' replayed' +
        (summary.unreadable ? ', ' + num(summary.unreadable) + ' unreadable (never replayed)' : '') +
        ', failed ' + when(summary.oldestFailedAt) + ' → ' + when(summary.newestFailedAt) + '.');
    const body = $('dlq-body');
    body.replaceChildren();
    if (summary.reasons.length === 0) body.append(el('tr', {}, el('td', { class: 'empty', colspan: 5 }, 'Nothing failed for good.')));
    for (const r of summary.reasons) {
      const waiting = Math.max(0, r.count - r.replayed);
      body.append(el('tr', { dataset: { reason: r.reason } },
        el('td', { class: 'grow', title: r.reason }, r.reason), cell(r.count, 'bad'), cell(r.replayed), cell(waiting),
        el('td', {}, waiting > 0 ? el('button', { type: 'button', onclick: () => replay(r.reason, waiting) }, 'Replay') : '')));
    }
  }

  async function replay(reason, waiting) {
    if (!window.confirm('Replay ' + waiting + ' dead letters failed with\n"' + reason + '"\nonto the push topic with a fresh retry budget?')) return;
    $('dlq-message').textContent = 'replaying…';
    try {
      const r = await api(dlqPath('/replay'), { method: 'POST', body: { reason } });
      $('dlq-message').textContent = 'Replayed ' + num(r.replayed) + ', skipped ' + num(r.skipped) + ' already replayed' + (r.unreadable ? ', ' + num(r.unreadable) + ' unreadable' : '') + '.';
      await loadDeadLetters();
    } catch (e) {
      $('dlq-message').textContent = 'Replay failed: ' + e.message;
    }
  }

  // ---- realtime -------------------------------------------------------------------------

  async function loadRealtime() {
    if (!state.site) return;
    const siteId = state.site.id;
    const [presence, stats] = await Promise.all([
      api('/v1/sites/' + siteId + '/realtime/channels'),
      api('/v1/sites/' + siteId + '/realtime/stats?period=minute'),
    ]);
    if (!state.site || state.site.id !== siteId) return;
    const buckets = stats.buckets || [];
    const last = buckets[buckets.length - 1];
    const hour = buckets.reduce((a, b) => ({ written: a.written + b.written, acks: a.acks + b.acks, messages: a.messages + b.messages }), { written: 0, acks: 0, messages: 0 });
    const ackRate = hour.written > 0 ? (100 * hour.acks) / hour.written : null;
    const figures = [
      ['Users online', num(presence.users)], ['Connections', num(presence.connections)], ['Gateways', num(presence.gateways)],
      ['Messages (1 h)', num(hour.messages)], ['Ack rate (1 h)', ackRate == null ? '—' : ackRate.toFixed(1) + '%'],
    ];
    $('rt-figures').replaceChildren(...figures.map(([name, value]) => el('div', {}, el('dt', {}, name), el('dd', {}, value))));
    $('ack-now').textContent = last ? 'last minute ' + (100 * last.ackRate).toFixed(1) + '% of ' + num(last.written) : '';
    window.ConsoleChart.draw($('chart-acks'), {
      series: [{ name: 'ack rate', color: COLORS.acks, points: buckets.map((b) => [Date.parse(b.start), 100 * b.ackRate]) }],
      yFormat: (v) => Math.round(v) + '%',
      empty: 'no realtime messages with acks in the last hour',
    });
    const body = $('rt-body');
    body.replaceChildren();
    if (presence.channels.length === 0) body.append(el('tr', {}, el('td', { class: 'empty', colspan: 3 }, 'Nobody is connected.')));
    for (const c of presence.channels) body.append(el('tr', {}, el('td', { class: 'mono grow', title: c.name }, c.name), cell(c.connections), cell(c.users)));
    if (presence.otherChannels > 0) body.append(el('tr', {}, el('td', { class: 'muted', colspan: 3 }, '… and ' + num(presence.otherChannels) + ' quieter channels')));
  }

  // ---- wiring -------------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const token = $('token').value.trim();
      $('token').value = '';
      $('login-error').textContent = '';
      if (token) signIn(token);
    });
    $('signout').addEventListener('click', () => signOut(''));
    $('sites-more').addEventListener('click', () => loadSites(true).catch(report));
    $('dlq-refresh').addEventListener('click', () => loadDeadLetters().catch((e) => { $('dlq-message').textContent = e.message; }));
    $('dlq-all').addEventListener('change', (e) => { state.dlqAll = e.target.checked; loadDeadLetters().catch(report); });
    $('compose-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const form = e.target;
      const body = { title: form.title.value, send: form.send.checked };
      if (form.body.value) body.options = { body: form.body.value };
      if (form.launchUrl.value) body.launchUrl = form.launchUrl.value;
      try {
        const push = await api('/v1/sites/' + state.site.id + '/pushes', { method: 'POST', body });
        $('compose-result').textContent = 'Created ' + push.id + (body.send ? ', sending.' : ' (pending: Send it from the list).');
        form.reset();
        await loadPushes();
        openPush(push);
      } catch (err) {
        $('compose-result').textContent = err.message;
      }
    });
    window.addEventListener('resize', () => { if (state.push) drawCharts(); });
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) signIn(saved); else signOut('');
  });
})();
