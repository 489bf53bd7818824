/*
 * realtime.js: the browser client of pushservice's realtime gateway (docs/realtime.md).
 *
 * Plain JavaScript, no build step, no dependencies. Load it with a classic script tag; it
 * defines `window.PushserviceRealtime`:
 *
 *   <script src="https://api.example/sdk/realtime.js"></script>
 *   <script>
 *     var rt = PushserviceRealtime.connect({
 *       url: 'https://rt.example',                       // the gateway (or an array of them)
 *       getToken: function () {                          // your backend mints the token
 *         return fetch('/realtime-token').then(function (r) { return r.text(); });
 *       },
 *       channels: ['room:1'],                            // besides user:<you>, always joined
 *     });
 *     rt.on('message', function (m) { console.log(m.channel, m.data); });
 *     rt.on('recovered', function (r) { if (!r.recovered) refetch(r.channel); });
 *   </script>
 *
 * What it does for the application:
 *   - connects over WebSocket (token in the first `auth` frame) or Server-Sent Events
 *     (EventSource; the token in `?token=`, since EventSource cannot set headers);
 *   - reconnects after any loss with exponential backoff and full jitter (a random delay
 *     between 0 and min(maxDelayMs, minDelayMs * 2^attempt)), or after exactly the `afterMs`
 *     of a `reconnect` frame; never after `session_limit` (reconnecting would kick another of
 *     the user's sessions, which would kick this one, and so on);
 *   - resumes: it tracks each channel's position (from every message, `subscribed` and
 *     `welcome`) and the epoch, and reconnects with them (WebSocket: `since`; SSE: the
 *     `lastEventId` query parameter), so nothing published while it was away is lost; when
 *     the gateway cannot recover a channel it says so with a `recovered` event whose
 *     `recovered` is false: refetch that channel's state;
 *   - drops a message it has already delivered (same channel, offset not above the last one
 *     delivered), as a guard: the gateway does not send duplicates;
 *   - acknowledges messages that ask for it (`ack: true`), batched (WebSocket `ack` frames,
 *     or POST /v1/realtime/ack for SSE), unless `autoAck: false`;
 *   - asks `getToken()` again when the gateway refuses the token (expired, or any other
 *     refusal: after a secret rotation the application has a new one to give).
 *
 * Events: `message`, `connected`, `disconnected`, `subscribed`, `recovered`, `error` (see
 * sdk/README.md).
 */
(function (global) {
  'use strict';

  var DEFAULTS = {
    transport: 'websocket', // or 'sse'
    channels: [],
    autoAck: true,
    minDelayMs: 500, // backoff: first retry within this, doubling per failed attempt
    maxDelayMs: 30000, // ... up to this
    ackDelayMs: 100, // acks are gathered this long into one frame or request
    pongTimeoutMs: 10000, // WebSocket: no frame this long after our ping closes the socket
  };

  // Token refusals, as the gateway names them (docs/realtime.md).
  var AUTH_CODES = ['expired', 'bad_signature', 'unknown_site', 'malformed', 'not_yet_valid'];
  var CHANNEL_RE = /^[A-Za-z0-9_\-:.@]{1,128}$/;

  /** An Error with a `code` (and extras), as pushservice.js makes them. */
  function rtError(code, message, extra) {
    var err = new Error(message);
    err.name = 'PushserviceRealtimeError';
    err.code = code;
    if (extra) {
      for (var k in extra) {
        if (Object.prototype.hasOwnProperty.call(extra, k)) err[k] = extra[k];
      }
    }
    return err;
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch (e) {
      return null;
    }
  }

  /** The claims of a JWT, read without verifying (the client only needs `exp` and `sub`). */
  function tokenClaims(token) {
    try {
      var payload = String(token).split('.')[1];
      var b64 = payload.replace(/-/g, '+').replace(/_/g, '/');
      while (b64.length % 4) b64 += '=';
      var claims = JSON.parse(global.atob(b64));
      return claims && typeof claims === 'object' ? claims : null;
    } catch (e) {
      return null;
    }
  }

  /** The `exp` claim of a JWT (seconds), or null: to spot an expired token without asking. */
  function tokenExpiry(token) {
    var claims = tokenClaims(token);
    return claims && typeof claims.exp === 'number' ? claims.exp : null;
  }

  /** Base URLs: a string or an array of them, without trailing slashes. */
  function baseUrls(url) {
    var list = Array.isArray(url) ? url.slice() : [url];
    if (!list.length) throw rtError('invalid-argument', 'url is required (the gateway\'s base URL)');
    return list.map(function (u) {
      if (typeof u !== 'string' || !u) throw rtError('invalid-argument', 'url must be a non-empty string');
      var parsed;
      try {
        parsed = new URL(u, global.location ? global.location.href : undefined);
      } catch (e) {
        throw rtError('invalid-argument', 'url is not a URL: ' + u);
      }
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
        throw rtError('invalid-argument', 'url must be http(s):// (the WebSocket URL is derived from it): ' + u);
      }
      return parsed.href.replace(/\/+$/, '');
    });
  }

  // ---------------------------------------------------------------------------------------
  // The client

  /**
   * A connection to the gateway that stays up: see the file's header. Create it with
   * `PushserviceRealtime.connect(options)`; it starts connecting at once (after the current
   * script turn, so listeners added right away see every event).
   */
  function Client(options) {
    options = options || {};
    if (typeof options.getToken !== 'function') {
      throw rtError('invalid-argument', 'getToken is required: a function returning the token (or a promise of it)');
    }
    var transport = options.transport || DEFAULTS.transport;
    if (transport !== 'websocket' && transport !== 'sse') {
      throw rtError('invalid-argument', 'transport must be "websocket" or "sse", not ' + transport);
    }
    if (transport === 'websocket' && typeof global.WebSocket !== 'function') transport = 'sse';
    this.urls = baseUrls(options.url);
    this.transport = transport;
    this.options = {};
    for (var k in DEFAULTS) this.options[k] = options[k] == null ? DEFAULTS[k] : options[k];
    this.getToken = options.getToken;
    /** Named channels (the user's own channel is implicit), in the order they were joined. */
    this.channels = [];
    (options.channels || []).forEach(function (c) {
      this._checkChannel(c);
      if (this.channels.indexOf(c) < 0) this.channels.push(c);
    }, this);
    /** Where each channel is: {epoch, offsets: {channel: offset}}; see positions(). */
    this.epoch = null;
    this.offsets = {};
    if (options.since && options.since.epoch) {
      this.epoch = String(options.since.epoch);
      for (var c in options.since.positions || {}) this.offsets[c] = Number(options.since.positions[c]);
    }
    this.state = 'connecting'; // 'connected', 'disconnected' (waiting to retry), 'closed'
    this.user = null;
    this.connectionId = null;
    this.stats = { messages: 0, duplicates: 0, connects: 0, acksSent: 0, tokenRequests: 0 };
    this._listeners = {};
    this._token = null;
    this._attempt = 0; // failed attempts since the last welcome
    this._urlIndex = 0;
    this._ws = null;
    this._es = null;
    this._timer = null;
    this._heartbeat = null;
    this._ackIds = [];
    this._ackTimer = null;
    this._generation = 0; // bumps on every new connection: stale callbacks check it
    this._onOnline = this._retryNow.bind(this);
    if (global.addEventListener) global.addEventListener('online', this._onOnline);
    var self = this;
    Promise.resolve().then(function () {
      self._open();
    });
  }

  // ---- events

  /** Adds a listener; returns a function that removes it. */
  Client.prototype.on = function (event, fn) {
    (this._listeners[event] = this._listeners[event] || []).push(fn);
    var self = this;
    return function () {
      self.off(event, fn);
    };
  };

  /** Removes a listener. */
  Client.prototype.off = function (event, fn) {
    var list = this._listeners[event] || [];
    var i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
  };

  Client.prototype._emit = function (event, payload) {
    var list = (this._listeners[event] || []).slice();
    for (var i = 0; i < list.length; i++) {
      try {
        list[i].call(this, payload);
      } catch (e) {
        // A listener's bug must not break the connection.
        if (global.console) global.console.error('PushserviceRealtime: a "' + event + '" listener threw', e);
      }
    }
  };

  // ---- public methods

  /** Joins a channel (the token must allow it). */
  Client.prototype.subscribe = function (channel) {
    this._checkChannel(channel);
    if (this.channels.indexOf(channel) >= 0) return;
    this.channels.push(channel);
    if (this.transport === 'websocket') {
      if (this._wsReady()) this._sendFrame(this._subscribeFrame(channel));
      // Not connected: the next auth frame names it.
    } else {
      this._sseChannelsChanged();
    }
  };

  /** Leaves a channel; its position is forgotten. */
  Client.prototype.unsubscribe = function (channel) {
    var i = this.channels.indexOf(channel);
    if (i < 0) return;
    this.channels.splice(i, 1);
    delete this.offsets[channel];
    if (this.transport === 'websocket') {
      if (this._wsReady()) this._sendFrame({ type: 'unsubscribe', channel: channel });
    } else {
      this._sseChannelsChanged();
    }
  };

  /** Acknowledges messages by id (one or an array); sent in a batch within ackDelayMs. */
  Client.prototype.ack = function (ids) {
    ids = Array.isArray(ids) ? ids : [ids];
    for (var i = 0; i < ids.length; i++) if (ids[i]) this._ackIds.push(String(ids[i]));
    if (!this._ackTimer && this._ackIds.length) {
      var self = this;
      this._ackTimer = setTimeout(function () {
        self._ackTimer = null;
        self._flushAcks();
      }, this.options.ackDelayMs);
    }
  };

  /**
   * Where the client is in every channel: {epoch, positions: {channel: offset}}. Keep it (for
   * example in sessionStorage) and pass it back as `since` to resume after a page load.
   */
  Client.prototype.positions = function () {
    var positions = {};
    for (var c in this.offsets) positions[c] = this.offsets[c];
    return { epoch: this.epoch, positions: positions };
  };

  /** Closes the connection for good. */
  Client.prototype.close = function () {
    if (this.state === 'closed') return;
    this._flushAcks();
    this._teardown();
    if (global.removeEventListener) global.removeEventListener('online', this._onOnline);
    this._setState('closed', { reason: 'closed', willReconnect: false });
  };

  // ---- connecting

  Client.prototype._checkChannel = function (channel) {
    if (typeof channel !== 'string' || !CHANNEL_RE.test(channel)) {
      throw rtError('invalid-argument', 'a channel name is 1-128 characters of A-Z a-z 0-9 _ - : . @, not ' + JSON.stringify(channel));
    }
  };

  Client.prototype._baseUrl = function () {
    return this.urls[this._urlIndex % this.urls.length];
  };

  /** Fetches a token when there is none (or it has expired), then opens a connection. */
  Client.prototype._open = function () {
    if (this.state === 'closed') return;
    var self = this;
    var generation = ++this._generation;
    var exp = this._token && tokenExpiry(this._token);
    var stale = exp != null && exp * 1000 <= Date.now() + 5000;
    var token = !this._token || stale ? this._fetchToken() : Promise.resolve(this._token);
    token.then(
      function (t) {
        if (generation !== self._generation || self.state === 'closed') return;
        if (self.transport === 'websocket') self._openWebSocket(generation);
        else self._openEventSource(generation);
      },
      function (err) {
        if (generation !== self._generation) return;
        self._emit('error', rtError('token-failed', 'getToken() failed: ' + (err && err.message ? err.message : err), { cause: err }));
        self._lost({ reason: 'token-failed' });
      }
    );
  };

  Client.prototype._fetchToken = function () {
    var self = this;
    this.stats.tokenRequests++;
    return Promise.resolve()
      .then(function () {
        return self.getToken();
      })
      .then(function (token) {
        if (typeof token !== 'string' || !token) throw new Error('getToken() gave no token');
        self._token = token;
        return token;
      });
  };

  /** Closes the current socket or stream without reporting anything. */
  Client.prototype._teardown = function () {
    this._generation++;
    clearTimeout(this._timer);
    this._timer = null;
    clearInterval(this._heartbeat);
    this._heartbeat = null;
    if (this._ws) {
      var ws = this._ws;
      this._ws = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch (e) {
        /* already closed */
      }
    }
    if (this._es) {
      this._es.close();
      this._es = null;
    }
  };

  Client.prototype._setState = function (state, info) {
    var was = this.state;
    this.state = state;
    if (state === 'connected') this._emit('connected', info);
    else if (was === 'connected' || state === 'closed') this._emit('disconnected', info);
  };

  /**
   * The connection is gone: schedule the next attempt. `how.afterMs` (a reconnect frame) is
   * obeyed as given; otherwise full-jitter exponential backoff. `how.fatal` stops for good.
   */
  Client.prototype._lost = function (how) {
    if (this.state === 'closed') return;
    this._teardown();
    if (how.fatal) {
      this._setState('closed', { reason: how.reason, willReconnect: false });
      return;
    }
    var delay;
    if (how.afterMs != null) {
      delay = Math.max(0, Number(how.afterMs) || 0);
    } else if (how.immediate) {
      delay = 0;
    } else {
      var ceiling = Math.min(this.options.maxDelayMs, this.options.minDelayMs * Math.pow(2, this._attempt));
      delay = Math.floor(Math.random() * ceiling);
      this._attempt++;
      // With several gateways, a failed attempt moves on to the next one.
      this._urlIndex++;
    }
    this._setState('disconnected', { reason: how.reason, willReconnect: true, delayMs: delay });
    var self = this;
    this._timer = setTimeout(function () {
      self._timer = null;
      self._open();
    }, delay);
  };

  /** Back online (the browser's `online` event): retry now instead of after the backoff. */
  Client.prototype._retryNow = function () {
    if (this.state === 'disconnected' && this._timer) {
      clearTimeout(this._timer);
      this._timer = null;
      this._open();
    }
  };

  /**
   * The gateway refused the token (`code`). Expired: get a new one and retry at once. Any
   * other refusal: get a new one too (the site may have rotated its secret), but back off, so
   * a token that keeps being refused is not asked for in a tight loop.
   */
  Client.prototype._refused = function (code, message) {
    this._token = null;
    this._emit('error', rtError('auth', 'the gateway refused the token: ' + code + (message ? ' (' + message + ')' : ''), { reason: code }));
    this._lost({ reason: 'auth:' + code, immediate: code === 'expired' && this._attempt === 0 });
    if (code === 'expired') this._attempt++;
  };

  // ---- positions, messages, acks

  /**
   * A channel's position reported by the gateway (`welcome`, `subscribed`). In the same epoch
   * it only moves forward, and never past what was delivered here unless `advance` (WebSocket
   * `subscribed` comes after the recovered messages, SSE `welcome` before them).
   */
  Client.prototype._reportedPosition = function (channel, offset, advance) {
    if (typeof offset !== 'number') return;
    var known = this.offsets[channel];
    if (known == null || (advance && offset > known)) this.offsets[channel] = offset;
  };

  /** A new epoch invalidates every position. */
  Client.prototype._epoch = function (epoch) {
    if (epoch == null) return;
    epoch = String(epoch);
    if (this.epoch !== epoch) {
      this.epoch = epoch;
      this.offsets = {};
    }
  };

  /** The gateway confirmed `channel` (WebSocket `subscribed`, an SSE `welcome` entry). */
  Client.prototype._joined = function (channel, offset, recovered) {
    this._emit('subscribed', { channel: channel, offset: offset, recovered: recovered });
    if (typeof recovered === 'boolean') this._emit('recovered', { channel: channel, recovered: recovered });
  };

  /** A message from the gateway: dedupe, track, deliver, ack. */
  Client.prototype._message = function (m) {
    if (!m || typeof m.channel !== 'string') return;
    if (typeof m.offset === 'number') {
      var last = this.offsets[m.channel];
      if (last != null && m.offset <= last) {
        this.stats.duplicates++;
        return;
      }
      this.offsets[m.channel] = m.offset;
    }
    this.stats.messages++;
    var message = {
      channel: m.channel,
      offset: m.offset,
      id: m.id,
      data: m.data,
      ts: m.ts,
      ack: m.ack === true,
      transport: this.transport,
    };
    this._emit('message', message);
    if (message.ack && this.options.autoAck && message.id) this.ack(message.id);
  };

  Client.prototype._flushAcks = function () {
    clearTimeout(this._ackTimer);
    this._ackTimer = null;
    if (!this._ackIds.length) return;
    var ids = this._ackIds;
    if (this.transport === 'websocket') {
      if (!this._wsReady()) return; // kept for the next connection
      this._ackIds = [];
      this._sendFrame({ type: 'ack', ids: ids });
      this.stats.acksSent += ids.length;
      return;
    }
    if (!this._token) return;
    this._ackIds = [];
    var self = this;
    global
      .fetch(this._baseUrl() + '/v1/realtime/ack', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + this._token },
        body: JSON.stringify({ ids: ids }),
        keepalive: true,
      })
      .then(function (response) {
        if (response.ok) {
          self.stats.acksSent += ids.length;
        } else {
          self._emit('error', rtError('ack-failed', 'POST /v1/realtime/ack answered ' + response.status, { status: response.status, ids: ids }));
        }
      })
      .catch(function (err) {
        self._emit('error', rtError('ack-failed', 'POST /v1/realtime/ack failed: ' + (err && err.message), { status: 0, ids: ids }));
      });
  };

  // ---- WebSocket

  Client.prototype._wsReady = function () {
    return !!(this._ws && this._ws.readyState === 1 && this.state === 'connected');
  };

  Client.prototype._sendFrame = function (frame) {
    try {
      this._ws.send(JSON.stringify(frame));
    } catch (e) {
      /* closing: the close handler reconnects */
    }
  };

  Client.prototype._subscribeFrame = function (channel) {
    var frame = { type: 'subscribe', channel: channel };
    if (this.epoch && this.offsets[channel] != null) frame.since = { epoch: this.epoch, offset: this.offsets[channel] };
    return frame;
  };

  Client.prototype._openWebSocket = function (generation) {
    var self = this;
    var url = this._baseUrl().replace(/^http/, 'ws') + '/v1/realtime/ws';
    var ws;
    try {
      ws = new global.WebSocket(url);
    } catch (e) {
      this._emit('error', rtError('connect-failed', 'cannot open ' + url + ': ' + e.message));
      this._lost({ reason: 'connect-failed' });
      return;
    }
    this._ws = ws;
    var farewell = null; // {afterMs} of a reconnect frame, or {code} of an error frame
    var lastSeen = Date.now();
    var welcomed = false;

    ws.onopen = function () {
      var auth = { type: 'auth', token: self._token, channels: self.channels.slice() };
      if (self.epoch) auth.since = self.positions();
      ws.send(JSON.stringify(auth));
    };
    ws.onmessage = function (event) {
      if (generation !== self._generation) return;
      lastSeen = Date.now();
      var frame = parseJson(event.data);
      if (!frame) return;
      switch (frame.type) {
        case 'message':
          self._message(frame);
          break;
        case 'welcome':
          welcomed = true;
          self._epoch(frame.epoch);
          self.user = frame.user;
          self.connectionId = frame.connection;
          self._attempt = 0;
          self.stats.connects++;
          self._startHeartbeat(ws, frame.heartbeatMs, function () {
            return lastSeen;
          });
          self._setState('connected', { transport: 'websocket', url: url, connection: frame.connection, user: frame.user, epoch: frame.epoch });
          self._flushAcks();
          break;
        case 'subscribed':
          self._reportedPosition(frame.channel, frame.offset, true);
          self._joined(frame.channel, frame.offset, frame.recovered);
          break;
        case 'reconnect':
          farewell = { afterMs: frame.afterMs, reason: 'reconnect:' + frame.reason };
          break;
        case 'error':
          if (AUTH_CODES.indexOf(frame.code) >= 0 || frame.code === 'session_limit' || frame.code === 'too_slow' || frame.code === 'rate_limited') {
            farewell = { code: frame.code, message: frame.message };
          } else {
            // A refused request (subscribe to a channel the token does not allow, ...).
            self._emit('error', rtError(frame.code || 'error', frame.message || 'the gateway refused a request', { channel: frame.channel }));
          }
          break;
        default: // pong, unsubscribed
      }
    };
    ws.onerror = function () {
      /* onclose follows, with the code */
    };
    ws.onclose = function (event) {
      if (generation !== self._generation) return;
      self._ws = null;
      self._closed(event.code, farewell, welcomed);
    };
  };

  /** What to do after the socket closed with `code` following `farewell`. */
  Client.prototype._closed = function (code, farewell, welcomed) {
    if (farewell && farewell.code === 'session_limit') {
      this._emit('error', rtError('session_limit', 'this user opened too many sessions; this one was closed and will not reconnect'));
      this._lost({ reason: 'session_limit', fatal: true });
      return;
    }
    if ((farewell && AUTH_CODES.indexOf(farewell.code) >= 0) || (code === 4001 && !welcomed)) {
      this._refused((farewell && farewell.code) || 'refused', farewell && farewell.message);
      return;
    }
    if (farewell && farewell.afterMs != null) {
      this._lost({ reason: farewell.reason, afterMs: farewell.afterMs });
      return;
    }
    if (farewell && farewell.code) this._emit('error', rtError(farewell.code, farewell.message || farewell.code));
    this._lost({ reason: farewell && farewell.code ? farewell.code : 'closed:' + code });
  };

  /**
   * Browsers answer the gateway's protocol pings by themselves but do not show them to
   * scripts, so a dead connection (a laptop waking up, a NAT dropping state) is found with
   * our own ping when nothing came for a heartbeat, closing when nothing answers.
   */
  Client.prototype._startHeartbeat = function (ws, heartbeatMs, lastSeen) {
    var every = Number(heartbeatMs) > 0 ? Number(heartbeatMs) : 25000;
    var self = this;
    clearInterval(this._heartbeat);
    this._heartbeat = setInterval(function () {
      var idle = Date.now() - lastSeen();
      if (idle >= every + self.options.pongTimeoutMs) {
        self._lost({ reason: 'heartbeat-timeout' });
      } else if (idle >= every) {
        self._sendFrame({ type: 'ping' });
      }
    }, Math.max(1000, Math.floor(every / 2)));
  };

  // ---- Server-Sent Events

  /**
   * The `lastEventId` to resume with. The gateway's own id is used while the channel list is
   * the one it was made for (it is opaque); after a subscribe or unsubscribe, its positions
   * belong to another channel order, so one is built from the tracked positions in the
   * documented form `<epoch>~<p0>,<p1>,…` (user channel first, `-` for none).
   */
  Client.prototype._sseLastEventId = function () {
    if (!this.epoch) return null;
    // The user is known from a welcome, or (resuming with `since` after a page load) from
    // the token's `sub`.
    var claims = this.user ? null : tokenClaims(this._token);
    var user = this.user || (claims && typeof claims.sub === 'string' ? claims.sub : null);
    var order = user ? ['user:' + user].concat(this.channels) : null;
    if (this._sseId && this._sseOrder && order && this._sseOrder.join(',') === order.join(',')) return this._sseId;
    if (!order) return null;
    var self = this;
    var any = false;
    var parts = order.map(function (c) {
      if (self.offsets[c] == null) return '-';
      any = true;
      return String(self.offsets[c]);
    });
    return any ? this.epoch + '~' + parts.join(',') : null;
  };

  Client.prototype._sseUrl = function () {
    var url = this._baseUrl() + '/v1/realtime/sse?channels=' + this.channels.map(encodeURIComponent).join(',') + '&token=' + encodeURIComponent(this._token);
    var last = this._sseLastEventId();
    if (last) url += '&lastEventId=' + encodeURIComponent(last);
    return url;
  };

  /** A subscribe or unsubscribe over SSE: a new stream with the new list, soon (batched). */
  Client.prototype._sseChannelsChanged = function () {
    if (this.state === 'closed' || this._sseRestart) return;
    var self = this;
    this._sseRestart = true;
    Promise.resolve().then(function () {
      self._sseRestart = false;
      if (self.state === 'closed' || self.state === 'disconnected') return; // the next attempt uses the list
      self._teardown();
      self._open();
    });
  };

  Client.prototype._openEventSource = function (generation) {
    var self = this;
    var url = this._sseUrl();
    var es = new global.EventSource(url);
    this._es = es;
    var welcomed = false;
    var farewell = null;
    var order = null;

    function track(event) {
      // EventSource keeps the last id it saw; only events that move a position carry one.
      if (event.lastEventId) {
        self._sseId = event.lastEventId;
        self._sseOrder = order;
      }
    }
    es.addEventListener('welcome', function (event) {
      if (generation !== self._generation) return;
      var w = parseJson(event.data) || {};
      welcomed = true;
      self._epoch(w.epoch);
      self.user = w.user;
      self.connectionId = w.connection;
      order = (w.channels || []).map(function (c) {
        return c.channel;
      });
      (w.channels || []).forEach(function (c) {
        self._reportedPosition(c.channel, c.offset, false);
      });
      track(event);
      self._attempt = 0;
      self.stats.connects++;
      self._setState('connected', { transport: 'sse', url: self._baseUrl(), connection: w.connection, user: w.user, epoch: w.epoch });
      (w.channels || []).forEach(function (c) {
        self._joined(c.channel, c.offset, c.recovered);
      });
      self._flushAcks();
    });
    es.addEventListener('message', function (event) {
      if (generation !== self._generation) return;
      self._message(parseJson(event.data));
      track(event);
    });
    es.addEventListener('reconnect', function (event) {
      var r = parseJson(event.data) || {};
      farewell = { afterMs: r.afterMs, reason: 'reconnect:' + r.reason };
    });
    es.addEventListener('error', function (event) {
      if (generation !== self._generation) return;
      if (typeof event.data === 'string') {
        // The gateway's `error` event (a MessageEvent); the stream ends after it.
        var e = parseJson(event.data) || {};
        farewell = { code: e.code, message: e.message };
        return;
      }
      // The stream failed or ended. EventSource would reconnect by itself with the same URL
      // (the same token, no backoff); the client does it instead.
      if (farewell && farewell.code === 'session_limit') {
        self._closed(4008, farewell, welcomed);
        return;
      }
      if (welcomed || farewell) {
        self._closed(0, farewell, welcomed);
        return;
      }
      // Refused before the welcome: EventSource does not show the status or body, so ask
      // again with fetch to learn whether the token was refused, and why.
      es.close();
      self._refusal(url).then(function (code) {
        if (generation !== self._generation) return;
        if (code) self._refused(code.code, code.message);
        else self._lost({ reason: 'connect-failed' });
      });
    });
  };

  /**
   * Why `url` is refused: {code, message} for a 401/403 whose JSON names a reason (or an
   * expired token, which needs no request), else null. The check request is aborted as soon
   * as its status is known, so an accepted one does not hold a second stream.
   */
  Client.prototype._refusal = function (url) {
    var exp = tokenExpiry(this._token);
    if (exp != null && exp * 1000 <= Date.now()) return Promise.resolve({ code: 'expired' });
    if (typeof global.fetch !== 'function') return Promise.resolve(null);
    var controller = typeof global.AbortController === 'function' ? new global.AbortController() : null;
    return global
      .fetch(url, { headers: { Accept: 'text/event-stream' }, signal: controller && controller.signal })
      .then(function (response) {
        if (response.status !== 401 && response.status !== 403) {
          if (controller) controller.abort();
          return null;
        }
        return response.text().then(function (text) {
          var body = parseJson(text) || {};
          var e = body.error && typeof body.error === 'object' ? body.error : body;
          return { code: e.code || e.reason || 'refused', message: e.message || text.slice(0, 200) };
        });
      })
      .catch(function () {
        return null;
      });
  };

  // ---------------------------------------------------------------------------------------

  global.PushserviceRealtime = {
    /** Creates a client and starts connecting; see the file's header and sdk/README.md. */
    connect: function (options) {
      return new Client(options);
    },
    Client: Client,
    // Exposed for tests.
    _tokenExpiry: tokenExpiry,
  };
})(typeof window !== 'undefined' ? window : self);
