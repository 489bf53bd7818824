/*
 * sw.js: pushservice's service worker.
 *
 * A service worker must be served from the site's own origin. Either copy this file to the
 * site (e.g. as /sw.js), or keep a one-line /sw.js on the site that loads ours:
 *
 *   importScripts('https://api.example/sdk/sw.js');
 *
 * It only adds event listeners (push, notificationclick, notificationclose,
 * pushsubscriptionchange), so it can live next to a site's own service-worker code.
 *
 * On `push` it shows the notification our senders encrypt:
 *
 *   {"pushId": "<24 hex>", "title": "...",
 *    "options": {"body", "icon", "image", "badge", "vibration": [...], "silent", "renotify",
 *                "requireInteraction", "dir", "tag", "actions": [{"action", "title", "icon", "url"}]},
 *    "launchUrl": "https://...", "priority": "normal" | "high"}
 *
 * and reports `delivered`, then `click` or `close`, to POST {apiBase}/v1/events with the
 * subscriber id and API address that pushservice.js stored in IndexedDB at subscribe time.
 * A report that fails is logged and never stands in the way of showing the notification.
 */
(function () {
  'use strict';

  // Shared with pushservice.js: same database, store and key.
  var DB_NAME = 'pushservice';
  var DB_VERSION = 1;
  var STORE = 'state';
  var STATE_KEY = 'subscription';

  // A report that takes longer than this is abandoned (the event's waitUntil must end).
  var REPORT_TIMEOUT_MS = 10000;
  var PUSH_ID = /^[0-9a-f]{24}$/i;
  var LOG = '[pushservice]';

  // ---------------------------------------------------------------------------------------
  // IndexedDB (the record pushservice.js wrote)

  function openDb() {
    return new Promise(function (resolve, reject) {
      var req = indexedDB.open(DB_NAME, DB_VERSION);
      req.onupgradeneeded = function () {
        if (!req.result.objectStoreNames.contains(STORE)) req.result.createObjectStore(STORE);
      };
      req.onsuccess = function () {
        resolve(req.result);
      };
      req.onerror = function () {
        reject(req.error);
      };
    });
  }

  function withStore(mode, fn) {
    return openDb().then(function (db) {
      return new Promise(function (resolve, reject) {
        var tx = db.transaction(STORE, mode);
        var req = fn(tx.objectStore(STORE));
        tx.oncomplete = function () {
          db.close();
          resolve(req ? req.result : undefined);
        };
        tx.onerror = tx.onabort = function () {
          db.close();
          reject(tx.error);
        };
      });
    });
  }

  /** {siteId, apiBase, subscriberId, endpoint, ...} or null; never rejects. */
  function readState() {
    return withStore('readonly', function (store) {
      return store.get(STATE_KEY);
    }).then(
      function (value) {
        return value || null;
      },
      function (err) {
        console.warn(LOG, 'cannot read the subscription state from IndexedDB:', err);
        return null;
      }
    );
  }

  function writeState(value) {
    return withStore('readwrite', function (store) {
      return store.put(value, STATE_KEY);
    });
  }

  // ---------------------------------------------------------------------------------------
  // Talking to the API

  /** fetch with a time limit; resolves with the Response, rejects on network error/timeout. */
  function fetchWithTimeout(url, init) {
    var controller = typeof AbortController === 'function' ? new AbortController() : null;
    var timer = setTimeout(function () {
      if (controller) controller.abort();
    }, REPORT_TIMEOUT_MS);
    if (controller) init.signal = controller.signal;
    return fetch(url, init).then(
      function (response) {
        clearTimeout(timer);
        return response;
      },
      function (err) {
        clearTimeout(timer);
        throw err;
      }
    );
  }

  function postJson(url, body) {
    return fetchWithTimeout(url, {
      method: 'POST',
      mode: 'cors',
      credentials: 'omit',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body),
    });
  }

  /**
   * Reports `type` ("delivered", "click" or "close") for `pushId`. Never rejects: a failed
   * report is logged as a warning and dropped. Resolves true when the API accepted it.
   */
  function report(pushId, type) {
    if (typeof pushId !== 'string' || !PUSH_ID.test(pushId)) return Promise.resolve(false);
    var outcome = { pushId: pushId, event: type, ok: false, status: null, error: null };
    return readState()
      .then(function (state) {
        if (!state || !state.apiBase || !state.subscriberId) {
          outcome.error = 'no subscription stored by pushservice.js';
          return;
        }
        return postJson(state.apiBase + '/v1/events', {
          pushId: pushId,
          subscriberId: state.subscriberId,
          type: type,
        }).then(function (response) {
          outcome.status = response.status;
          outcome.ok = response.ok;
          if (!response.ok) outcome.error = 'the API answered ' + response.status;
        });
      })
      .catch(function (err) {
        outcome.error = String((err && err.message) || err);
      })
      .then(function () {
        if (!outcome.ok) console.warn(LOG, 'reporting', type, 'for push', pushId, 'failed:', outcome.error);
        return tellPages(outcome);
      })
      .then(function () {
        return outcome.ok;
      });
  }

  /**
   * Tells the site's open pages how a report went ({source: "pushservice", type: "report",
   * pushId, event, ok, status, error}), for pages that want to show it (the demo does).
   */
  function tellPages(outcome) {
    var message = {
      source: 'pushservice',
      type: 'report',
      pushId: outcome.pushId,
      event: outcome.event,
      ok: outcome.ok,
      status: outcome.status,
      error: outcome.error,
    };
    return self.clients
      .matchAll({ type: 'window', includeUncontrolled: true })
      .then(function (windows) {
        windows.forEach(function (client) {
          client.postMessage(message);
        });
      })
      .catch(function () {
        /* nobody to tell */
      });
  }

  // ---------------------------------------------------------------------------------------
  // From the payload to showNotification's arguments

  function isString(value) {
    return typeof value === 'string' && value !== '';
  }

  /** `url` made absolute when it is http(s), else null (no javascript:, data: ...). */
  function safeUrl(url) {
    if (!isString(url)) return null;
    try {
      var parsed = new URL(url, self.location.origin);
      return parsed.protocol === 'https:' || parsed.protocol === 'http:' ? parsed.href : null;
    } catch (e) {
      return null;
    }
  }

  /** A vibration pattern the browser accepts: milliseconds, a number or a list of them. */
  function vibratePattern(value) {
    if (typeof value === 'number' && isFinite(value) && value >= 0) return [Math.round(value)];
    if (!Array.isArray(value)) return null;
    var pattern = value.filter(function (ms) {
      return typeof ms === 'number' && isFinite(ms) && ms >= 0;
    });
    return pattern.length ? pattern.map(Math.round) : null;
  }

  /** The title of a notification whose payload gave none: the site's host name. */
  function defaultTitle() {
    return self.location.hostname || 'Notification';
  }

  /**
   * Reads a push message's data: our JSON payload when it is one, otherwise (plain text,
   * JSON without a title, no data at all) a generic notification showing the text.
   * Never throws.
   */
  function readPayload(data) {
    if (!data) return { title: defaultTitle(), options: {} };
    var text = '';
    try {
      text = data.text();
    } catch (e) {
      text = '';
    }
    var json = null;
    try {
      json = JSON.parse(text);
    } catch (e) {
      json = null;
    }
    if (json && typeof json === 'object' && !Array.isArray(json) && isString(json.title)) return json;
    if (json && typeof json === 'object' && !Array.isArray(json)) {
      // JSON, but not ours: show what it says if it says something.
      var body = isString(json.body) ? json.body : isString(json.message) ? json.message : '';
      return { title: defaultTitle(), options: { body: body } };
    }
    if (typeof json === 'string') text = json;
    return { title: defaultTitle(), options: { body: text.slice(0, 1000) } };
  }

  /**
   * showNotification(title, options) arguments for a payload. Each option is copied only when
   * it has the type the browser wants, and combinations the browser rejects are avoided
   * (renotify needs a tag; a silent notification may not vibrate), so a push a site
   * stored with odd values still shows.
   */
  function notificationFor(payload) {
    var o = payload.options && typeof payload.options === 'object' ? payload.options : {};
    var options = {};
    ['body', 'icon', 'image', 'badge', 'tag'].forEach(function (name) {
      if (isString(o[name])) options[name] = o[name];
    });
    if (o.dir === 'auto' || o.dir === 'ltr' || o.dir === 'rtl') options.dir = o.dir;
    if (typeof o.requireInteraction === 'boolean') options.requireInteraction = o.requireInteraction;
    if (typeof o.silent === 'boolean') options.silent = o.silent;
    if (o.renotify === true && options.tag) options.renotify = true;
    // Stored as `vibration` (the original schema); the browser's option is `vibrate`.
    var vibrate = vibratePattern(o.vibration != null ? o.vibration : o.vibrate);
    if (vibrate && !options.silent) options.vibrate = vibrate;

    // Buttons. Their URLs ride in `data`, keyed by action id, for notificationclick.
    var actionUrls = {};
    if (Array.isArray(o.actions)) {
      var actions = [];
      o.actions.forEach(function (a, i) {
        if (!a || typeof a !== 'object' || !isString(a.title)) return;
        var id = isString(a.action) ? a.action : 'action-' + i;
        var button = { action: id, title: a.title };
        if (isString(a.icon)) button.icon = a.icon;
        actions.push(button);
        var url = safeUrl(a.url);
        if (url) actionUrls[id] = url;
      });
      if (actions.length) options.actions = actions;
    }

    options.data = {
      pushId: isString(payload.pushId) ? payload.pushId : null,
      launchUrl: safeUrl(payload.launchUrl),
      actions: actionUrls,
    };
    return { title: String(payload.title), options: options };
  }

  // ---------------------------------------------------------------------------------------
  // Events

  function onPush(event) {
    var payload = readPayload(event.data);
    var n = notificationFor(payload);
    var registration = self.registration;
    var shown = registration.showNotification(n.title, n.options).catch(function (err) {
      // An option the browser rejects (e.g. too many actions for an old version): show the
      // essentials rather than nothing.
      console.warn(LOG, 'showNotification rejected the options, showing title and body only:', err);
      var plain = { data: n.options.data };
      if (n.options.body) plain.body = n.options.body;
      if (n.options.icon) plain.icon = n.options.icon;
      if (n.options.tag) plain.tag = n.options.tag;
      return registration.showNotification(n.title, plain);
    });
    return shown.then(
      function () {
        return report(n.options.data.pushId, 'delivered');
      },
      function (err) {
        console.error(LOG, 'could not show the notification:', err);
      }
    );
  }

  /** Focuses a window already showing `url`, else opens one. */
  function openUrl(url) {
    return self.clients
      .matchAll({ type: 'window', includeUncontrolled: true })
      .then(function (windows) {
        for (var i = 0; i < windows.length; i++) {
          if (windows[i].url === url && 'focus' in windows[i]) return windows[i].focus();
        }
        return self.clients.openWindow ? self.clients.openWindow(url) : null;
      })
      .catch(function (err) {
        console.warn(LOG, 'could not open', url + ':', err);
      });
  }

  function onClick(event) {
    var notification = event.notification;
    notification.close();
    var data = notification.data || {};
    // A button's own URL, else (the body was clicked, or the button has none) the launch URL.
    var url = (event.action && data.actions && data.actions[event.action]) || data.launchUrl || null;
    // Open first, while the click still allows opening a window; report alongside.
    return Promise.all([url ? openUrl(url) : null, report(data.pushId, 'click')]);
  }

  function onClose(event) {
    var data = event.notification.data || {};
    return report(data.pushId, 'close');
  }

  /**
   * The browser replaced the subscription (expiry, key rotation by the push service):
   * register the new one with the API under the same site, externalId and tags, and tell
   * the API the old endpoint is gone. Best effort.
   */
  function onSubscriptionChange(event) {
    return readState().then(function (state) {
      if (!state || !state.apiBase || !state.siteId) return null;
      var site = state.apiBase + '/v1/sites/' + encodeURIComponent(state.siteId);
      var oldEndpoint = (event.oldSubscription && event.oldSubscription.endpoint) || state.endpoint;
      var next = event.newSubscription
        ? Promise.resolve(event.newSubscription)
        : self.registration.pushManager.subscribe(
            (event.oldSubscription && event.oldSubscription.options) || {
              userVisibleOnly: true,
              applicationServerKey: state.publicKey,
            }
          );
      return next
        .then(function (subscription) {
          var body = subscription.toJSON();
          if (state.externalId != null) body.externalId = state.externalId;
          if (state.tags != null) body.tags = state.tags;
          return postJson(site + '/subscribers', body).then(function (response) {
            if (!response.ok) throw new Error('POST subscribers answered ' + response.status);
            return response.json().then(function (json) {
              state.subscriberId = json.id;
              state.endpoint = subscription.endpoint;
              state.updatedAt = new Date().toISOString();
              return writeState(state);
            });
          });
        })
        .then(function () {
          if (oldEndpoint && oldEndpoint !== state.endpoint) {
            return postJson(site + '/subscribers/unsubscribe', { endpoint: oldEndpoint });
          }
          return null;
        })
        .catch(function (err) {
          console.warn(LOG, 'could not renew the push subscription:', err);
        });
    });
  }

  self.addEventListener('push', function (event) {
    event.waitUntil(onPush(event));
  });
  self.addEventListener('notificationclick', function (event) {
    event.waitUntil(onClick(event));
  });
  self.addEventListener('notificationclose', function (event) {
    event.waitUntil(onClose(event));
  });
  self.addEventListener('pushsubscriptionchange', function (event) {
    event.waitUntil(onSubscriptionChange(event));
  });

  // For tests and for sites that want to reuse the mapping in their own worker.
  self.PushServiceWorker = {
    readPayload: readPayload,
    notificationFor: notificationFor,
    report: report,
    onClick: onClick,
    onClose: onClose,
  };
})();
