/*
 * The wall: a small client for the LoopBack "LB Security Demo" REST API.
 *
 * REST calls (as in the tutorial):
 *   poll      GET    /api/posts/?filter[include][creator]&filter[where][created][gte]=<ISO>&filter[order]=created%20desc
 *   register  POST   /api/appusers          form: email, password
 *   login     POST   /api/appusers/login    form: email, password
 *   logout    POST   /api/appusers/logout   Authorization: <token>
 *   publish   POST   /api/posts             Authorization: <token>, form: text
 *   delete    DELETE /api/posts/<id>        Authorization: <token>
 * plus, to make posts deleted by other users disappear, each poll reconciles the
 * displayed posts with  GET /api/posts?filter[fields][id]=true .
 *
 * Live updates: an EventSource on  GET /api/posts/change-stream  triggers a poll on every
 * change event; while it is connected the regular poll only reconciles, at a slower rate.
 * Without EventSource (or while it reconnects) the client polls every two seconds.
 *
 * Every piece of data is rendered with textContent / attributes, never as HTML.
 */
(function () {
  'use strict';

  var API = '/api';
  var POLL_MS = 2000;
  var STREAM_POLL_MS = 15000; // reconciliation while the change stream is connected
  var EPOCH = new Date(Date.UTC(2000, 0, 1)).toISOString(); // first poll: everything since 2000

  var state = {
    token: null,
    userid: null,
    email: null,
    posts: new Map(),     // id (string) -> { ms, id, ownerId, el, textEl, authorEl }
    deleted: new Set(),   // ids this page deleted (never re-add them from a stale poll)
    newest: null,         // { iso, ms }: the server's `created` of the newest post seen
    pollTimer: null,
    polling: false,
    pollAgain: false,
    streaming: false,     // the change stream is connected
    loaded: false,
    offline: false
  };

  var $ = function (id) { return document.getElementById(id); };
  var ui = {};

  // ---------------------------------------------------------------- helpers

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function pad(n) { return n < 10 ? '0' + n : String(n); }

  // "YYYY-MM-DD at HH:MM" in the browser's local time (months 1-12, hours 00-23).
  function formatDate(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso || '');
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) +
      ' at ' + pad(d.getHours()) + ':' + pad(d.getMinutes());
  }

  function setStatus(message) {
    ui.status.textContent = message || '';
    clearTimeout(setStatus.timer);
    if (message && !state.offline) {
      setStatus.timer = setTimeout(function () {
        if (!state.offline) ui.status.textContent = '';
      }, 5000);
    }
  }

  function showError(node, message) {
    node.textContent = message || '';
  }

  function errorMessage(res) {
    var err = res && res.data && res.data.error;
    if (err && typeof err.message === 'string' && err.message) return err.message;
    return 'The server answered ' + (res ? res.status : '?') + '.';
  }

  // One REST request. Bodies are form-encoded, the token goes bare in Authorization.
  function api(method, path, opts) {
    opts = opts || {};
    var headers = { 'Accept': 'application/json' };
    var body;
    if (opts.form) {
      headers['Content-Type'] = 'application/x-www-form-urlencoded; charset=UTF-8';
      body = new URLSearchParams(opts.form).toString();
    }
    if (opts.auth && state.token) headers['Authorization'] = state.token;
    return fetch(API + path, {
      method: method,
      headers: headers,
      body: body,
      credentials: 'same-origin',
      cache: 'no-store'
    }).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        if (text) {
          try { data = JSON.parse(text); } catch (e) { data = null; }
        }
        return { ok: res.ok, status: res.status, data: data };
      });
    });
  }

  // ---------------------------------------------------------------- session

  function loadSession() {
    try {
      state.token = sessionStorage.getItem('token');
      state.userid = sessionStorage.getItem('userid');
      state.email = sessionStorage.getItem('email');
    } catch (e) { /* storage unavailable: stay logged out */ }
    if (!state.token || !state.userid) {
      state.token = state.userid = state.email = null;
    }
  }

  function setSession(token, userid, email) {
    state.token = String(token);
    state.userid = String(userid);
    state.email = email || null;
    try {
      sessionStorage.setItem('token', state.token);
      sessionStorage.setItem('userid', state.userid);
      if (state.email) sessionStorage.setItem('email', state.email);
      else sessionStorage.removeItem('email');
    } catch (e) { /* ignore */ }
    updateAuthUI();
  }

  function clearSession() {
    state.token = state.userid = state.email = null;
    try {
      sessionStorage.removeItem('token');
      sessionStorage.removeItem('userid');
      sessionStorage.removeItem('email');
    } catch (e) { /* ignore */ }
    updateAuthUI();
  }

  function loggedIn() { return !!state.token; }

  function updateAuthUI() {
    var on = loggedIn();
    ui.openAuth.hidden = on;
    ui.logout.hidden = !on;
    ui.compose.hidden = !on;
    ui.whoami.hidden = !on;
    ui.whoami.textContent = on ? (state.email ? 'Signed in as ' + state.email : 'Signed in') : '';
    state.posts.forEach(updateOwnership);
  }

  // After a reload, check that the stored token still works (and learn the email).
  function validateSession() {
    if (!loggedIn()) return;
    api('GET', '/appusers/' + encodeURIComponent(state.userid), { auth: true }).then(function (res) {
      if (res.ok && res.data) {
        setSession(state.token, state.userid, res.data.email || state.email);
      } else if (res.status === 401) {
        clearSession();
        setStatus('Your session has expired. Please log in again.');
      }
    }).catch(function () { /* offline: keep the session, the poll reports it */ });
  }

  // ---------------------------------------------------------------- feed

  function compareKey(a, b) {
    // newest first; ties broken by id, larger first
    if (a.ms !== b.ms) return b.ms - a.ms;
    var na = Number(a.id), nb = Number(b.id);
    if (!isNaN(na) && !isNaN(nb)) return nb - na;
    return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
  }

  function colourFor(text) {
    var h = 0;
    for (var i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) % 360;
    return 'hsl(' + h + ' 55% 42%)';
  }

  function renderPost(p, entry) {
    var id = entry.id;
    var email = (p.creator && p.creator.email) || 'Unknown user';

    var li = el('li', 'feed-item');
    var article = el('article', 'card post');
    article.dataset.id = id;
    article.dataset.owner = entry.ownerId;
    article.setAttribute('aria-labelledby', 'post-' + id + '-head');

    var head = el('header', 'post-head');
    head.id = 'post-' + id + '-head';
    var avatar = el('span', 'avatar', email.charAt(0).toUpperCase());
    avatar.setAttribute('aria-hidden', 'true');
    avatar.style.backgroundColor = colourFor(email);
    var meta = el('div', 'post-meta');
    var author = el('span', 'post-author', email);
    var time = el('time', 'post-date', formatDate(p.created));
    time.dateTime = typeof p.created === 'string' ? p.created : '';
    meta.append(author, document.createTextNode(' on '), time);
    head.append(avatar, meta);

    var text = el('p', 'post-text', p.text === undefined || p.text === null ? '' : p.text);
    text.id = 'post-' + id + '-text';

    var actions = el('div', 'post-actions');

    article.append(head, text, actions);
    li.appendChild(article);

    entry.el = li;
    entry.article = article;
    entry.textEl = text;
    entry.authorEl = author;
    entry.actions = actions;
    return li;
  }

  function updateOwnership(entry) {
    var mine = loggedIn() && entry.ownerId !== '' && entry.ownerId === state.userid;
    var button = entry.actions.querySelector('button.delete');
    if (mine && !button) {
      button = el('button', 'btn btn-danger btn-sm delete', 'Delete');
      button.type = 'button';
      button.setAttribute('aria-describedby', entry.textEl.id);
      button.addEventListener('click', function () { deletePost(entry.id, button); });
      entry.actions.appendChild(button);
    } else if (!mine && button) {
      button.remove();
    }
  }

  function mergePosts(list) {
    var added = 0;
    list.forEach(function (p) {
      if (!p || p.id === undefined || p.id === null) return;
      var id = String(p.id);
      if (state.deleted.has(id)) return;
      var ms = Date.parse(p.created);
      if (isNaN(ms)) ms = 0;
      if (typeof p.created === 'string' && (!state.newest || ms > state.newest.ms)) {
        state.newest = { iso: p.created, ms: ms };
      }
      var existing = state.posts.get(id);
      if (existing) {
        // keep an existing card current (text may have been edited by its owner)
        if (typeof p.text === 'string' && existing.textEl.textContent !== p.text) {
          existing.textEl.textContent = p.text;
        }
        if (p.creator && p.creator.email && existing.authorEl.textContent !== p.creator.email) {
          existing.authorEl.textContent = p.creator.email;
        }
        return;
      }
      var entry = {
        id: id,
        ms: ms,
        ownerId: p.ownerId === undefined || p.ownerId === null ? '' : String(p.ownerId)
      };
      var li = renderPost(p, entry);
      updateOwnership(entry);
      // insert at its place, newest first
      var before = null;
      var items = ui.feed.children;
      for (var i = 0; i < items.length; i++) {
        var other = state.posts.get(items[i].firstChild.dataset.id);
        if (other && compareKey(entry, other) < 0) { before = items[i]; break; }
      }
      ui.feed.insertBefore(li, before);
      state.posts.set(id, entry);
      added++;
    });
    updateEmpty();
    return added;
  }

  function removePost(id) {
    var entry = state.posts.get(id);
    if (!entry) return;
    var hadFocus = entry.el.contains(document.activeElement);
    var next = entry.el.nextElementSibling || entry.el.previousElementSibling;
    entry.el.remove();
    state.posts.delete(id);
    updateEmpty();
    if (hadFocus) {
      var target = next && next.querySelector('button.delete');
      (target || ui.feedHeading).focus();
    }
  }

  function updateEmpty() {
    ui.feedEmpty.hidden = !state.loaded || state.posts.size > 0;
  }

  function pollPath(sinceIso) {
    // the tutorial's query, brackets unencoded, creator included, newest first
    return '/posts/?filter[include][creator]&filter[where][created][gte]=' +
      encodeURIComponent(sinceIso) + '&filter[order]=created%20desc';
  }

  function setOnline(online) {
    if (online && state.offline) {
      state.offline = false;
      setStatus('Connected again.');
    } else if (!online && !state.offline) {
      state.offline = true;
      ui.status.textContent = 'Cannot reach the server. Retrying…';
    }
  }

  function poll() {
    clearTimeout(state.pollTimer);
    state.pollTimer = null;
    state.polling = true;
    var since = state.newest ? state.newest.iso : EPOCH;

    api('GET', pollPath(since)).then(function (res) {
      if (!res.ok || !Array.isArray(res.data)) throw new Error(errorMessage(res));
      mergePosts(res.data);
      state.loaded = true;
      updateEmpty();
      // reconcile: drop posts that no longer exist, fetch any we are missing
      return api('GET', '/posts?filter[fields][id]=true');
    }).then(function (res) {
      if (!res.ok || !Array.isArray(res.data)) throw new Error(errorMessage(res));
      var live = new Set(res.data.map(function (p) { return String(p.id); }));
      Array.from(state.posts.keys()).forEach(function (id) {
        if (!live.has(id)) removePost(id);
      });
      var missing = false;
      live.forEach(function (id) {
        if (!state.posts.has(id) && !state.deleted.has(id)) missing = true;
      });
      if (!missing) return null;
      return api('GET', '/posts?filter[include][creator]&filter[order]=created%20desc').then(function (full) {
        if (full.ok && Array.isArray(full.data)) mergePosts(full.data);
      });
    }).then(function () {
      setOnline(true);
    }).catch(function () {
      setOnline(false);
    }).then(function () {
      state.polling = false;
      ui.feed.setAttribute('aria-busy', 'false');
      var delay = state.pollAgain ? 0 : (state.streaming ? STREAM_POLL_MS : POLL_MS);
      state.pollAgain = false;
      state.pollTimer = setTimeout(poll, delay);
    });
  }

  // Change events only say that something changed; the poll fetches it (with its creator).
  function startStream() {
    if (typeof window.EventSource !== 'function') return;
    var source = new window.EventSource(API + '/posts/change-stream');
    source.onopen = function () { state.streaming = true; };
    source.onmessage = function () { pollSoon(); };
    // EventSource reconnects by itself (sending Last-Event-ID); poll at once, and faster
    // until it is back.
    source.onerror = function () {
      if (state.streaming) { state.streaming = false; pollSoon(); }
    };
  }

  function pollSoon() {
    if (state.polling) { state.pollAgain = true; return; }
    clearTimeout(state.pollTimer);
    state.pollTimer = setTimeout(poll, 0);
  }

  // ---------------------------------------------------------------- actions

  function setBusy(form, busy, message, errorNode) {
    Array.prototype.forEach.call(form.querySelectorAll('button, input, textarea'), function (c) {
      c.disabled = busy;
    });
    form.setAttribute('aria-busy', busy ? 'true' : 'false');
    if (busy && errorNode) errorNode.textContent = message || '';
  }

  function doLogin(email, password) {
    return api('POST', '/appusers/login', { form: { email: email, password: password } }).then(function (res) {
      if (!res.ok || !res.data || !res.data.id) return false;
      setSession(res.data.id, res.data.userId, email);
      if (ui.dialog.open) ui.dialog.close();
      ui.loginForm.reset();
      ui.registerForm.reset();
      setStatus('Welcome, ' + email + '.');
      ui.postText.focus();
      return true;
    });
  }

  function onLogin(event) {
    event.preventDefault();
    var email = ui.loginEmail.value.trim();
    var password = ui.loginPassword.value;
    if (!email) { showError(ui.loginError, 'Email is required.'); ui.loginEmail.focus(); return; }
    if (!password) { showError(ui.loginError, 'Password is required.'); ui.loginPassword.focus(); return; }
    setBusy(ui.loginForm, true, 'Stand by - trying to log in...', ui.loginError);
    doLogin(email, password).then(function (ok) {
      setBusy(ui.loginForm, false);
      if (ok) { showError(ui.loginError, ''); return; }
      showError(ui.loginError, 'Your login did not work.');
      ui.loginPassword.select();
      ui.loginPassword.focus();
    }, function () {
      setBusy(ui.loginForm, false);
      showError(ui.loginError, 'Could not reach the server. Please try again.');
    });
  }

  function registerError(res) {
    var err = res.data && res.data.error;
    var codes = err && err.details && err.details.codes;
    var dup = res.status === 422 && (
      (codes && codes.email && codes.email.indexOf('uniqueness') !== -1) ||
      /already exists/i.test(err && err.message || ''));
    if (dup) return 'Sorry, but that email already exists.';
    var messages = err && err.details && err.details.messages;
    if (messages) {
      var parts = [];
      Object.keys(messages).forEach(function (field) {
        parts.push(field + ': ' + [].concat(messages[field]).join(', '));
      });
      if (parts.length) return 'Sorry, registration failed (' + parts.join('; ') + ').';
    }
    return 'Sorry, registration failed: ' + errorMessage(res);
  }

  function onRegister(event) {
    event.preventDefault();
    var email = ui.registerEmail.value.trim();
    var password = ui.registerPassword.value;
    var confirm = ui.registerConfirm.value;
    if (!email) { showError(ui.registerError, 'Email is required.'); ui.registerEmail.focus(); return; }
    if (!password) { showError(ui.registerError, 'Password is required.'); ui.registerPassword.focus(); return; }
    if (password !== confirm) {
      showError(ui.registerError, 'Confirmation password didn\'t match.');
      ui.registerConfirm.focus();
      return;
    }
    setBusy(ui.registerForm, true, 'Stand by - trying to register...', ui.registerError);
    api('POST', '/appusers', { form: { email: email, password: password } }).then(function (res) {
      if (!res.ok) {
        setBusy(ui.registerForm, false);
        showError(ui.registerError, registerError(res));
        ui.registerEmail.focus();
        return null;
      }
      return doLogin(email, password).then(function (ok) {
        setBusy(ui.registerForm, false);
        if (ok) showError(ui.registerError, '');
        else showError(ui.registerError, 'Your account was created, but the login did not work.');
      });
    }).catch(function () {
      setBusy(ui.registerForm, false);
      showError(ui.registerError, 'Could not reach the server. Please try again.');
    });
  }

  function onLogout() {
    var done = function () {
      clearSession();
      setStatus('You are logged out.');
      ui.openAuth.focus();
    };
    api('POST', '/appusers/logout', { auth: true }).then(done, done);
  }

  function onPublish(event) {
    event.preventDefault();
    var text = ui.postText.value;
    if (!text.trim()) {
      showError(ui.postError, 'Write something before publishing.');
      ui.postText.focus();
      return;
    }
    setBusy(ui.postForm, true, '', ui.postError);
    api('POST', '/posts', { auth: true, form: { text: text } }).then(function (res) {
      setBusy(ui.postForm, false);
      if (res.ok) {
        ui.postText.value = '';
        showError(ui.postError, '');
        setStatus('Your post was published.');
        ui.postText.focus();
        pollSoon();
      } else if (res.status === 401) {
        clearSession();
        setStatus('Your session has expired. Please log in again.');
        ui.openAuth.focus();
      } else {
        showError(ui.postError, 'Your post could not be published: ' + errorMessage(res));
        ui.postText.focus();
      }
    }, function () {
      setBusy(ui.postForm, false);
      showError(ui.postError, 'Could not reach the server. Please try again.');
    });
  }

  function deletePost(id, button) {
    button.disabled = true;
    api('DELETE', '/posts/' + encodeURIComponent(id), { auth: true }).then(function (res) {
      if (res.ok || res.status === 404) {
        state.deleted.add(id);
        removePost(id);
        setStatus('Post deleted.');
      } else {
        button.disabled = false;
        setStatus(res.status === 401
          ? 'You are not allowed to delete this post.'
          : 'The post could not be deleted: ' + errorMessage(res));
      }
    }, function () {
      button.disabled = false;
      setStatus('Could not reach the server. Please try again.');
    });
  }

  function openAuth() {
    showError(ui.loginError, '');
    showError(ui.registerError, '');
    if (!ui.dialog.open) ui.dialog.showModal();
    ui.loginEmail.focus();
  }

  // ---------------------------------------------------------------- start

  function init() {
    ui = {
      status: $('status'),
      whoami: $('whoami'),
      openAuth: $('open-auth'),
      logout: $('logout'),
      compose: $('compose'),
      postForm: $('post-form'),
      postText: $('post-text'),
      postError: $('post-error'),
      feed: $('feed'),
      feedEmpty: $('feed-empty'),
      feedHeading: $('feed-heading'),
      dialog: $('auth-dialog'),
      closeAuth: $('close-auth'),
      loginForm: $('login-form'),
      loginEmail: $('login-email'),
      loginPassword: $('login-password'),
      loginError: $('login-error'),
      registerForm: $('register-form'),
      registerEmail: $('register-email'),
      registerPassword: $('register-password'),
      registerConfirm: $('register-confirm'),
      registerError: $('register-error')
    };

    ui.openAuth.addEventListener('click', openAuth);
    ui.closeAuth.addEventListener('click', function () { ui.dialog.close(); });
    ui.dialog.addEventListener('click', function (e) {
      if (e.target === ui.dialog) ui.dialog.close(); // click on the backdrop
    });
    ui.dialog.addEventListener('close', function () {
      if (!loggedIn()) ui.openAuth.focus();
    });
    ui.logout.addEventListener('click', onLogout);
    ui.loginForm.addEventListener('submit', onLogin);
    ui.registerForm.addEventListener('submit', onRegister);
    ui.postForm.addEventListener('submit', onPublish);
    ui.postText.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        ui.postForm.requestSubmit();
      }
    });

    loadSession();
    updateAuthUI();
    validateSession();
    poll();
    startStream();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
