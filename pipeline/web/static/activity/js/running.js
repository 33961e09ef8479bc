/*
 * Rokt Calendar Event: the running hover/modal. Same start as the configuration UI
 * (settings.json, parent-origin check, Postmonger bound to that origin, ready -> initActivity,
 * requestTokens -> POST {apiBase}/session), then this activity's live counts from
 * GET {apiBase}/activities/<activity.id>/stats, refreshed every 15 s until `destroy`.
 */
(function () {
  'use strict';

  var COUNTS = [
    ['queued', 'Queued', ''], ['accepted', 'Accepted by Rokt', 'ok'], ['confirmed', 'Added to calendar', 'ok'],
    ['no_subscription', 'No subscription', ''], ['missing_field', 'Missing field', 'bad'],
    ['failed', 'Failed', 'bad'], ['removed', 'Removed', '']
  ];
  var REFRESH_MS = 15000;
  var state = { settings: null, session: null, activity: null, token: '', timer: null, waiting: null };

  function $(id) { return document.getElementById(id); }
  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function fatal(text) {
    $('fatal').textContent = text;
    $('fatal').hidden = false;
    $('app').hidden = true;
    stop();
  }


  function tokens() {
    return new Promise(function (resolve) {
      var timer = setTimeout(function () { state.waiting = null; resolve(null); }, 10000);
      state.waiting = function (data) { clearTimeout(timer); state.waiting = null; resolve(data); };
      state.session.trigger('requestTokens');
    });
  }

  function openSession() {
    return tokens().then(function (data) {
      if (!data || !data.fuel2token) { throw new Error('Journey Builder sent no token for this page.'); }
      return fetch(state.settings.apiBase + '/session', {
        method: 'POST', credentials: 'omit',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({ fuel2token: data.fuel2token })
      });
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok || !data.token) { throw new Error('The server refused Journey Builder\'s token (' + response.status + ').'); }
        state.token = data.token;
      });
    });
  }

  function load(retried) {
    var id = state.activity && state.activity.id;
    if (!id) { fatal('Journey Builder did not say which activity this is.'); return Promise.resolve(); }
    return fetch(state.settings.apiBase + '/activities/' + encodeURIComponent(id) + '/stats', {
      credentials: 'omit', headers: { Accept: 'application/json', Authorization: 'Bearer ' + state.token }
    }).then(function (response) {
      if (response.status === 401 && !retried) { return openSession().then(function () { return load(true); }); }
      if (!response.ok) { throw new Error('stats answered ' + response.status); }
      return response.json().then(render);
    }).catch(function (error) { $('updated').textContent = 'Could not load the counts: ' + error.message; });
  }

  function render(stats) {
    var counts = stats.counts || {};
    var list = $('counts');
    clear(list);
    COUNTS.forEach(function (entry) {
      var item = el('li', entry[2]);
      item.setAttribute('data-state', entry[0]);
      item.appendChild(el('span', 'count', String(counts[entry[0]] || 0)));
      item.appendChild(el('span', 'label', entry[1]));
      list.appendChild(item);
    });
    var failures = $('failures');
    clear(failures);
    // missing_field reasons name their fields ("Missing field: City ×34"), then the failures
    var reasons = (stats.missingFields || []).map(function (item) {
      var names = item.fields && item.fields.length ? item.fields : [item.reason];
      return { state: 'missing_field', text: (names.length === 1 ? 'Missing field: ' : 'Missing fields: ') + names.join(', '), count: item.count };
    }).concat((stats.topFailures || []).map(function (item) {
      return { state: 'failed', text: 'Failed: ' + item.reason, count: item.count };
    }));
    reasons.forEach(function (reason) {
      var item = el('li', '');
      item.setAttribute('data-state', reason.state);
      item.appendChild(document.createTextNode(reason.text + ' '));
      item.appendChild(el('span', 'times', '\u00d7' + reason.count));
      failures.appendChild(item);
    });
    if (!reasons.length) { failures.appendChild(el('li', 'good', 'None so far.')); }
    $('updated').textContent = 'Updated ' + new Date().toLocaleTimeString();
    $('app').setAttribute('aria-busy', 'false');
  }

  function stop() {
    if (state.timer) { clearInterval(state.timer); state.timer = null; }
  }

  function onInitActivity(activity) {
    if (state.activity) { return; }
    state.activity = (activity && typeof activity === 'object') ? activity : {};
    if (state.activity.name) { $('running-name').textContent = state.activity.name; }
    openSession().then(function () {
      state.timer = setInterval(load, REFRESH_MS);
      return load();
    }).catch(function (error) { fatal(error.message); });
  }

  function start() {
    $('btn-refresh').addEventListener('click', function () { load(); });
    $('btn-close').addEventListener('click', function () {
      stop();
      if (state.session) { state.session.trigger('destroy'); }
    });
    window.JbOrigin.connect().then(function (ready) {
      state.settings = ready.settings;
      var session = ready.session;
      state.session = session;
      session.on('requestedTokens', function (data) { if (state.waiting) { state.waiting(data); } });
      session.on('initActivity', onInitActivity);
      session.on('destroy', function () { stop(); session.end(); });
      session.trigger('ready');
    }).catch(function (error) { fatal(error.refused ? error.message : 'The page could not start: ' + error.message); });
  }

  if (document.readyState === 'loading') { document.addEventListener('DOMContentLoaded', start); } else { start(); }
}());
