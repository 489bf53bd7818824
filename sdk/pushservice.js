/*
 * pushservice.js: the browser SDK of pushservice.
 *
 * Plain JavaScript, no build step. Load it with a classic script tag; it defines
 * `window.PushService`:
 *
 *   <script src="https://api.example/sdk/pushservice.js"></script>
 *   <script>
 *     button.onclick = () => PushService.subscribe({ siteId: '…' })
 *       .then(({ subscriberId }) => console.log('subscribed', subscriberId))
 *       .catch((err) => console.warn(err.code, err.message));
 *   </script>
 *
 * What `subscribe` does, in order:
 *   1. checks that this browser can receive push notifications at all;
 *   2. asks for the notifications permission (first, while the click that called us still
 *      counts as a user gesture: Safari and Firefox refuse the prompt otherwise);
 *   3. registers the service worker (`/sw.js` by default) and waits until it is active;
 *   4. fetches the site's VAPID public key from the API;
 *   5. subscribes with the browser's push service (`pushManager.subscribe`), reusing a
 *      subscription made with the same key;
 *   6. registers the subscription with the API, which answers with the subscriber id;
 *   7. stores {siteId, apiBase, subscriberId, endpoint} in IndexedDB, where the service
 *      worker (sw.js) finds them to report deliveries and clicks.
 *
 * Every failure is an `Error` with a `code` (see PushService.ERROR_CODES and sdk/README.md).
 */
(function (global) {
  'use strict';

  // Where the SDK keeps its state: sw.js reads the same database, same names.
  var DB_NAME = 'pushservice';
  var DB_VERSION = 1;
  var STORE = 'state';
  var STATE_KEY = 'subscription';

  // Error codes, so callers can switch on `err.code` without string-matching messages.
  var ERROR_CODES = {
    UNSUPPORTED: 'unsupported', // no Service Worker / Push API / Notification, or not https
    PERMISSION_DENIED: 'permission-denied', // the user (or the browser) blocked notifications
    PERMISSION_DISMISSED: 'permission-dismissed', // the prompt was closed without an answer
    SERVICE_WORKER_FAILED: 'service-worker-failed', // the service worker did not register or activate
    API_ERROR: 'api-error', // the API answered an error (err.status, err.apiCode) or was unreachable (status 0)
    SUBSCRIBE_FAILED: 'subscribe-failed', // the browser's push service refused the subscription
    INVALID_ARGUMENT: 'invalid-argument', // a bad argument to subscribe/unsubscribe
  };

  // The origin this script was loaded from: the default `apiBase`, since the API serves the
  // SDK under /sdk/. Read now: `document.currentScript` is only set while the script runs.
  var scriptOrigin = (function () {
    try {
      var script = global.document && global.document.currentScript;
      if (script && script.src) return new URL(script.src).origin;
    } catch (e) {
      /* fall through */
    }
    return global.location ? global.location.origin : '';
  })();

  // How long to wait for a service worker to become active before giving up.
  var ACTIVATION_TIMEOUT_MS = 30000;

  // ---------------------------------------------------------------------------------------
  // Errors

  /** An Error with a `code` and optional extra properties (status, apiCode, cause). */
  function pushError(code, message, extra) {
    var err = new Error(message);
    err.name = 'PushServiceError';
    err.code = code;
    if (extra) {
      for (var k in extra) {
        if (Object.prototype.hasOwnProperty.call(extra, k)) err[k] = extra[k];
      }
    }
    return err;
  }

  // ---------------------------------------------------------------------------------------
  // Support and arguments

  /** Why this browser cannot receive push notifications, or null when it can. */
  function unsupportedReason() {
    if (!global.isSecureContext) {
      return 'push notifications need a secure context: serve the page over https (or from localhost)';
    }
    if (!('serviceWorker' in global.navigator)) {
      return 'this browser has no Service Worker support (or it is disabled, e.g. in a private window)';
    }
    if (!('PushManager' in global)) {
      // Safari on iOS/iPadOS only offers the Push API to web apps added to the home screen.
      return 'this browser has no Push API (on iOS, add the site to the home screen first)';
    }
    if (!('Notification' in global)) {
      return 'this browser has no Notification API';
    }
    return null;
  }

  /** Checks and normalizes the common {siteId, apiBase} arguments. */
  function siteArgs(options) {
    options = options || {};
    var siteId = options.siteId;
    if (typeof siteId !== 'string' || !siteId.trim()) {
      throw pushError(ERROR_CODES.INVALID_ARGUMENT, 'siteId is required (the id the API gave the site)');
    }
    var apiBase = options.apiBase == null || options.apiBase === '' ? scriptOrigin : String(options.apiBase);
    try {
      apiBase = new URL(apiBase, global.location.href).href;
    } catch (e) {
      throw pushError(ERROR_CODES.INVALID_ARGUMENT, 'apiBase is not a URL: ' + options.apiBase);
    }
    return { siteId: siteId.trim(), apiBase: apiBase.replace(/\/+$/, '') };
  }

  function sitePath(args, rest) {
    return args.apiBase + '/v1/sites/' + encodeURIComponent(args.siteId) + rest;
  }

  // ---------------------------------------------------------------------------------------
  // Encoding

  /** base64url (padded or not) → Uint8Array. */
  function base64UrlToBytes(text) {
    var b64 = String(text).replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    var binary = global.atob(b64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  function bytesToBase64Url(bytes) {
    bytes = new Uint8Array(bytes);
    var binary = '';
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return global.btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function sameBytes(a, b) {
    a = new Uint8Array(a);
    b = new Uint8Array(b);
    if (a.length !== b.length) return false;
    for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  // ---------------------------------------------------------------------------------------
  // The API

  /**
   * Calls the API and returns {status, body}. Throws `api-error` for an error status (with the
   * API's `{"error": {"code", "message"}}` as err.apiCode / err.message) and for a network
   * failure (status 0: offline, DNS, or CORS: the site's origin missing from allowedOrigins).
   */
  function api(method, url, body) {
    var init = {
      method: method,
      mode: 'cors',
      credentials: 'omit',
      headers: { Accept: 'application/json' },
    };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return global.fetch(url, init).then(
      function (response) {
        return response.text().then(function (text) {
          var json = null;
          try {
            json = text ? JSON.parse(text) : null;
          } catch (e) {
            /* not JSON: handled below */
          }
          if (response.ok) return { status: response.status, body: json };
          var apiErr = (json && json.error) || {};
          throw pushError(
            ERROR_CODES.API_ERROR,
            method + ' ' + url + ' answered ' + response.status +
              (apiErr.message ? ': ' + apiErr.message : text ? ': ' + text.slice(0, 200) : ''),
            { status: response.status, apiCode: apiErr.code || null, apiMessage: apiErr.message || null }
          );
        });
      },
      function (cause) {
        throw pushError(
          ERROR_CODES.API_ERROR,
          method + ' ' + url + ' failed: ' + ((cause && cause.message) || cause) +
            ' (network down, or this origin is not in the site\'s allowedOrigins)',
          { status: 0, apiCode: 'network-error', apiMessage: null, cause: cause }
        );
      }
    );
  }

  /** The site's VAPID public key as the 65 bytes of an uncompressed P-256 point. */
  function fetchVapidKey(args) {
    return api('GET', sitePath(args, '/vapid-public-key')).then(function (res) {
      var text = res.body && res.body.publicKey;
      var bytes = null;
      try {
        bytes = typeof text === 'string' ? base64UrlToBytes(text) : null;
      } catch (e) {
        bytes = null;
      }
      if (!bytes || bytes.length !== 65 || bytes[0] !== 4) {
        throw pushError(ERROR_CODES.API_ERROR, 'the API gave no valid VAPID public key for site ' + args.siteId, {
          status: res.status,
          apiCode: 'invalid-vapid-key',
          apiMessage: null,
        });
      }
      return { bytes: bytes, text: text };
    });
  }

  // ---------------------------------------------------------------------------------------
  // IndexedDB: one record under STATE_KEY, shared with the service worker

  function openDb() {
    return new Promise(function (resolve, reject) {
      var req = global.indexedDB.open(DB_NAME, DB_VERSION);
      req.onupgradeneeded = function () {
        if (!req.result.objectStoreNames.contains(STORE)) req.result.createObjectStore(STORE);
      };
      req.onsuccess = function () {
        resolve(req.result);
      };
      req.onerror = function () {
        reject(req.error);
      };
      req.onblocked = function () {
        reject(new Error('IndexedDB "' + DB_NAME + '" is blocked by another tab'));
      };
    });
  }

  /** Runs `fn(store)` in one transaction; resolves with the request's result once committed. */
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

  function readState() {
    return withStore('readonly', function (store) {
      return store.get(STATE_KEY);
    }).then(function (value) {
      return value || null;
    });
  }

  function writeState(value) {
    return withStore('readwrite', function (store) {
      return store.put(value, STATE_KEY);
    });
  }

  function clearState() {
    return withStore('readwrite', function (store) {
      return store.delete(STATE_KEY);
    });
  }

  // ---------------------------------------------------------------------------------------
  // Permission and service worker

  /** Notification.requestPermission, promise or (old Safari) callback style. */
  function requestPermission() {
    return new Promise(function (resolve) {
      var maybePromise = global.Notification.requestPermission(resolve);
      if (maybePromise && typeof maybePromise.then === 'function') maybePromise.then(resolve, function () {
        resolve(global.Notification.permission);
      });
    });
  }

  function checkPermission(permission) {
    if (permission === 'granted') return;
    if (permission === 'denied') {
      throw pushError(
        ERROR_CODES.PERMISSION_DENIED,
        'notifications are blocked for this site; the visitor must allow them in the browser\'s site settings'
      );
    }
    throw pushError(ERROR_CODES.PERMISSION_DISMISSED, 'the notification prompt was dismissed without an answer');
  }

  /** Resolves once `registration` has an active worker (pushManager.subscribe needs one). */
  function waitForActive(registration) {
    if (registration.active) return Promise.resolve(registration);
    return new Promise(function (resolve, reject) {
      var timer = setTimeout(function () {
        reject(pushError(ERROR_CODES.SERVICE_WORKER_FAILED, 'the service worker did not become active within ' +
          ACTIVATION_TIMEOUT_MS / 1000 + ' s'));
      }, ACTIVATION_TIMEOUT_MS);
      var worker = registration.installing || registration.waiting;
      function check() {
        if (registration.active) {
          clearTimeout(timer);
          resolve(registration);
        } else if (worker && worker.state === 'redundant') {
          clearTimeout(timer);
          reject(pushError(ERROR_CODES.SERVICE_WORKER_FAILED, 'the service worker failed to install (see its console)'));
        }
      }
      if (worker) worker.addEventListener('statechange', check);
      // A worker may already be waiting behind an older active one: the older one serves.
      registration.addEventListener('updatefound', function () {
        worker = registration.installing;
        if (worker) worker.addEventListener('statechange', check);
      });
      check();
    });
  }

  function registerServiceWorker(scriptUrl, scope) {
    var options = scope ? { scope: scope } : undefined;
    return global.navigator.serviceWorker.register(scriptUrl, options).then(waitForActive, function (cause) {
      throw pushError(
        ERROR_CODES.SERVICE_WORKER_FAILED,
        'could not register the service worker ' + scriptUrl + ': ' + ((cause && cause.message) || cause) +
          ' (it must be served from this site\'s own origin, as JavaScript)',
        { cause: cause }
      );
    });
  }

  /** The registration a previous subscribe used (its scope is stored), else the page's one. */
  function findRegistration(scope) {
    return global.navigator.serviceWorker.getRegistration(scope || undefined).then(function (registration) {
      return registration || null;
    });
  }

  // ---------------------------------------------------------------------------------------
  // Subscribing

  /**
   * The browser's subscription for `vapidKey`: the existing one when it was made with that
   * key, otherwise a new one (an existing subscription with another key is dropped first:
   * the browser refuses to hold two).
   */
  function browserSubscription(registration, vapidKey, stored) {
    var pushManager = registration.pushManager;
    return pushManager
      .getSubscription()
      .then(function (existing) {
        if (!existing) return null;
        var existingKey = existing.options && existing.options.applicationServerKey;
        var same = existingKey
          ? sameBytes(existingKey, vapidKey.bytes)
          : // Browsers without `options`: trust what we stored at the last subscribe.
            !!(stored && stored.endpoint === existing.endpoint && stored.publicKey === vapidKey.text);
        if (same) return existing;
        return existing.unsubscribe().then(function () {
          return null;
        });
      })
      .then(function (existing) {
        if (existing) return existing;
        return pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: vapidKey.bytes });
      })
      .catch(function (cause) {
        if (cause && cause.code) throw cause;
        if (cause && cause.name === 'NotAllowedError' && global.Notification.permission !== 'granted') {
          throw pushError(ERROR_CODES.PERMISSION_DENIED, 'the browser refused the push subscription: permission denied', {
            cause: cause,
          });
        }
        throw pushError(
          ERROR_CODES.SUBSCRIBE_FAILED,
          'the browser\'s push service refused the subscription: ' + ((cause && cause.message) || cause),
          { cause: cause }
        );
      });
  }

  /**
   * Subscribes this browser to the site's notifications.
   *
   * @param {object}   options
   * @param {string}   options.siteId         the site's id (from `POST /v1/sites`)
   * @param {string}   [options.apiBase]      the API's origin, e.g. "https://push.example";
   *                                           default: where this script was loaded from
   * @param {string}   [options.externalId]   the site's own id for this visitor (to target them)
   * @param {string[]} [options.tags]         tags to target groups of visitors
   * @param {string}   [options.serviceWorker] the service worker script, on this origin ('/sw.js')
   * @param {string}   [options.scope]        the service worker's scope (default: its folder)
   * @returns {Promise<{subscriberId: string, endpoint: string}>}
   */
  function subscribe(options) {
    options = options || {};
    // Synchronous checks and the permission prompt come before the first `await`, so the
    // prompt is still inside the user gesture (click) that called us.
    var reason = unsupportedReason();
    if (reason) return Promise.reject(pushError(ERROR_CODES.UNSUPPORTED, reason));
    var args;
    try {
      args = siteArgs(options);
    } catch (err) {
      return Promise.reject(err);
    }
    if (options.tags != null && (!Array.isArray(options.tags) || options.tags.some(function (t) {
      return typeof t !== 'string';
    }))) {
      return Promise.reject(pushError(ERROR_CODES.INVALID_ARGUMENT, 'tags must be an array of strings'));
    }
    if (options.externalId != null && typeof options.externalId !== 'string') {
      return Promise.reject(pushError(ERROR_CODES.INVALID_ARGUMENT, 'externalId must be a string'));
    }
    if (global.Notification.permission === 'denied') {
      return Promise.reject(pushError(
        ERROR_CODES.PERMISSION_DENIED,
        'notifications are blocked for this site; the visitor must allow them in the browser\'s site settings'
      ));
    }
    var permission = requestPermission();

    var scriptUrl = options.serviceWorker || '/sw.js';
    var registration, vapidKey, subscription, stored;

    return permission
      .then(checkPermission)
      .then(function () {
        return Promise.all([
          registerServiceWorker(scriptUrl, options.scope),
          fetchVapidKey(args),
          readState().catch(function () {
            return null;
          }),
        ]);
      })
      .then(function (results) {
        registration = results[0];
        vapidKey = results[1];
        stored = results[2];
        return browserSubscription(registration, vapidKey, stored);
      })
      .then(function (sub) {
        subscription = sub;
        // The API takes the PushSubscription JSON ({endpoint, expirationTime, keys}) as is.
        var body = subscription.toJSON();
        if (options.externalId != null) body.externalId = options.externalId;
        if (options.tags != null) body.tags = options.tags;
        return api('POST', sitePath(args, '/subscribers'), body);
      })
      .then(function (res) {
        var subscriberId = res.body && res.body.id;
        if (typeof subscriberId !== 'string' || !subscriberId) {
          throw pushError(ERROR_CODES.API_ERROR, 'the API registered the subscription but returned no subscriber id', {
            status: res.status,
            apiCode: 'invalid-response',
            apiMessage: null,
          });
        }
        var state = {
          siteId: args.siteId,
          apiBase: args.apiBase,
          subscriberId: subscriberId,
          endpoint: subscription.endpoint,
          // For unsubscribe(), and for the service worker when the browser renews a
          // subscription (pushsubscriptionchange): same key, same externalId and tags.
          publicKey: vapidKey.text,
          scope: registration.scope,
          externalId: options.externalId != null ? options.externalId : null,
          tags: options.tags != null ? options.tags.slice() : null,
          updatedAt: new Date().toISOString(),
        };
        return writeState(state).then(
          function () {
            return { subscriberId: subscriberId, endpoint: subscription.endpoint, created: !!(res.body && res.body.created) };
          },
          function (cause) {
            // Without the stored state the service worker cannot report deliveries and clicks.
            throw pushError(
              ERROR_CODES.SUBSCRIBE_FAILED,
              'subscribed, but could not store the subscription in IndexedDB: ' + ((cause && cause.message) || cause),
              { cause: cause, subscriberId: subscriberId }
            );
          }
        );
      });
  }

  // ---------------------------------------------------------------------------------------
  // Unsubscribing and state

  /**
   * Unsubscribes this browser: tells the API first (so nothing more is sent), then drops the
   * browser's subscription and the stored state. When the API call fails nothing changes
   * locally and the promise rejects with `api-error`, so the call can be retried. An endpoint
   * the API does not know (404) counts as already unsubscribed there.
   *
   * @param {object} [options] {siteId, apiBase, scope}; default: what subscribe() stored
   * @returns {Promise<{unsubscribed: boolean, endpoint: string|null}>}
   */
  function unsubscribe(options) {
    options = options || {};
    var reason = unsupportedReason();
    if (reason) return Promise.reject(pushError(ERROR_CODES.UNSUPPORTED, reason));
    var stored, registration, subscription, args;
    return readState()
      .catch(function () {
        return null;
      })
      .then(function (state) {
        stored = state;
        args = siteArgs({
          siteId: options.siteId || (stored && stored.siteId),
          apiBase: options.apiBase || (stored && stored.apiBase),
        });
        return findRegistration(options.scope || (stored && stored.scope));
      })
      .then(function (reg) {
        registration = reg;
        return registration ? registration.pushManager.getSubscription() : null;
      })
      .then(function (sub) {
        subscription = sub;
        var endpoint = (subscription && subscription.endpoint) || (stored && stored.endpoint) || null;
        if (!endpoint) return null;
        return api('POST', sitePath(args, '/subscribers/unsubscribe'), { endpoint: endpoint })
          .catch(function (err) {
            if (err.status === 404) return null; // unknown there: nothing to undo
            throw err;
          })
          .then(function () {
            return endpoint;
          });
      })
      .then(function (endpoint) {
        var done = subscription ? subscription.unsubscribe() : Promise.resolve(false);
        return done.then(function () {
          return clearState().then(function () {
            return { unsubscribed: !!endpoint, endpoint: endpoint };
          });
        });
      });
  }

  /**
   * Where this browser stands:
   * {supported, reason, permission, subscribed, subscriberId, endpoint, siteId}.
   * `subscribed` means the browser holds a subscription and the API registered it.
   *
   * @param {object} [options] {scope}: the service worker scope subscribe() used
   */
  function state(options) {
    options = options || {};
    var reason = unsupportedReason();
    var result = {
      supported: !reason,
      reason: reason,
      permission: 'Notification' in global ? global.Notification.permission : 'unsupported',
      subscribed: false,
      subscriberId: null,
      endpoint: null,
      siteId: null,
    };
    if (reason) return Promise.resolve(result);
    var stored;
    return readState()
      .catch(function () {
        return null;
      })
      .then(function (value) {
        stored = value;
        return findRegistration(options.scope || (stored && stored.scope));
      })
      .then(function (registration) {
        return registration ? registration.pushManager.getSubscription() : null;
      })
      .then(function (subscription) {
        result.endpoint = subscription ? subscription.endpoint : null;
        if (stored && subscription && stored.endpoint === subscription.endpoint) {
          result.subscribed = result.permission === 'granted';
          result.subscriberId = stored.subscriberId;
          result.siteId = stored.siteId;
        }
        return result;
      });
  }

  global.PushService = {
    subscribe: subscribe,
    unsubscribe: unsubscribe,
    state: state,
    /** Why push notifications cannot work here, or null (synchronous). */
    unsupportedReason: unsupportedReason,
    ERROR_CODES: ERROR_CODES,
    // Exposed for tests and for sites that need them.
    _base64UrlToBytes: base64UrlToBytes,
    _bytesToBase64Url: bytesToBase64Url,
  };
})(typeof window !== 'undefined' ? window : self);
