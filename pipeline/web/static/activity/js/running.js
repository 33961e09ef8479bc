/*
 * Rokt Calendar Event: the running hover/modal. Same start as the configuration UI
 * (settings.json, parent-origin check, Postmonger bound to that origin, ready -> initActivity,
 * requestTokens -> POST {apiBase}/session), then this activity's live counts from
 * GET {apiBase}/activities/<activity.id>/stats, refreshed every 15 s until `destroy`, and the
 * progress of each event job running on its event or activity (GET {apiBase}/event-jobs?running=true,
 * then each job's GET {apiBase}/event-jobs/<id> every second until it is done).
 */
(function () {
  'use strict';

  var COUNTS = [
    ['queued', 'Queued', ''], ['accepted', 'Accepted by Rokt', 'ok'], ['confirmed', 'Added to calendar', 'ok'],
    ['no_subscription', 'No subscription', ''], ['missing_field', 'Missing field', 'bad'],
    ['failed', 'Failed', 'bad'], ['removed', 'Removed', '']
  ];
  // after sending (event jobs, Rokt's webhooks): shown only once some contact is there
  var LATER_COUNTS = [['updated', 'Updated', 'ok'], ['cancelled', 'Cancelled', ''], ['withdrawn', 'Withdrawn', '']];
  var REFRESH_MS = 15000;
  var state = {
    settings: null, session: null, activity: null, token: '', timer: null, waiting: null,
    templateId: '',   // the event this activity sends (its saved inArguments)
    jobs: {}          // job id -> stop() of its polling (null once done), for each job shown
  };

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

  /* GET {apiBase}`path` with the session (renewed once on 401): resolves the JSON answer. */
  function get(path, retried) {
    return fetch(state.settings.apiBase + path, {
      credentials: 'omit', headers: { Accept: 'application/json', Authorization: 'Bearer ' + state.token }
    }).then(function (response) {
      if (response.status === 401 && !retried) { return openSession().then(function () { return get(path, true); }); }
      if (!response.ok) { throw new Error(path.split('?')[0].split('/').slice(-1)[0] + ' answered ' + response.status); }
      return response.json();
    });
  }

  function load() {
    if (!state.activity || !state.activity.id) {
      fatal('Journey Builder did not say which activity this is.');
      return Promise.resolve();
    }
    loadJobs();
    return loadCounts();
  }

  function loadCounts() {
    return get('/activities/' + encodeURIComponent(state.activity.id) + '/stats').then(render)
      .catch(function (error) { $('updated').textContent = 'Could not load the counts: ' + error.message; });
  }

  /* The event this activity sends, from its saved inArguments (later keys win, as in execute). */
  function templateOf(activity) {
    var execute = (activity.arguments && activity.arguments.execute) || {};
    var id = '';
    (execute.inArguments || []).forEach(function (item) {
      if (item && typeof item === 'object' && typeof item.templateId === 'string') { id = item.templateId; }
    });
    return id;
  }

  /* Jobs running on this activity's event or on the activity itself: each shown and followed
     until done (a finished one stays shown, with its final counts). */
  function loadJobs() {
    return get('/event-jobs?running=true').then(function (data) {
      ((data && data.items) || []).filter(function (job) {
        return (state.templateId && job.templateId === state.templateId) || job.activityId === state.activity.id;
      }).forEach(follow);
    }).catch(function () { /* the counts still show; the next refresh asks again */ });
  }

  function follow(job) {
    if (Object.prototype.hasOwnProperty.call(state.jobs, job.id)) { return; }
    var box = el('div', 'job');
    box.id = 'job-' + Object.keys(state.jobs).length;
    $('jobs').appendChild(box);
    $('jobs-section').hidden = false;
    state.jobs[job.id] = window.EventJobs.watch(function () {
      return get('/event-jobs/' + encodeURIComponent(job.id));
    }, function (current) {
      window.EventJobs.render(box, current);
      if (current.state === 'done') {
        state.jobs[job.id] = null;
        loadCounts();  // its contacts moved (updated, cancelled): the tiles say so now
      }
    });
  }

  function render(stats) {
    var counts = stats.counts || {};
    var list = $('counts');
    clear(list);
    COUNTS.concat(LATER_COUNTS.filter(function (entry) { return counts[entry[0]]; })).forEach(function (entry) {
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
    Object.keys(state.jobs).forEach(function (id) {
      if (state.jobs[id]) { state.jobs[id](); state.jobs[id] = null; }
    });
  }

  function onInitActivity(activity) {
    if (state.activity) { return; }
    state.activity = (activity && typeof activity === 'object') ? activity : {};
    if (state.activity.name) { $('running-name').textContent = state.activity.name; }
    state.templateId = templateOf(state.activity);
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
