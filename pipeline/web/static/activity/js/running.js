/*
 * Rokt Calendar Event: the running hover/modal. Same start as the configuration UI
 * (settings.json, parent-origin check, Postmonger bound to that origin, ready -> initActivity,
 * requestTokens -> POST {apiBase}/session), then this activity's live counts from
 * GET {apiBase}/activities/<activity.id>/stats, refreshed every 15 s until `destroy`, and the
 * progress of each event job running on its event or activity (GET {apiBase}/event-jobs?running=true,
 * then each job's GET {apiBase}/event-jobs/<id> every second until it is done). The funnel of the
 * last FUNNEL_DAYS days (entered -> sent -> in calendars -> clicked, the app's Performance page's
 * steps) sums the stats' `days` rows; drawn as SVG with presentation attributes only (the CSP
 * allows no inline style), beside its table.
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
  var FUNNEL_DAYS = 30;
  // [figure of the stats' days rows, label]: as pipeline/web/app_performance.py FUNNEL
  var FUNNEL = [['entered', 'Entered'], ['created', 'Sent'], ['in_calendars', 'In calendars'], ['clickers', 'Clicked']];
  var SVG_NS = 'http://www.w3.org/2000/svg';
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
    return get('/activities/' + encodeURIComponent(state.activity.id) + '/stats?days=' + FUNNEL_DAYS).then(render)
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
    renderFunnel(stats.days || []);
    $('updated').textContent = 'Updated ' + new Date().toLocaleTimeString();
    $('app').setAttribute('aria-busy', 'false');
  }

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs).forEach(function (name) { node.setAttribute(name, String(attrs[name])); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function share(count, entered) { return entered ? Math.round(100 * count / entered) + '%' : '\u2013'; }

  /* The funnel's steps summed over the days, as bars (longest = entered) and as the table rows. */
  function renderFunnel(days) {
    var totals = {};
    FUNNEL.forEach(function (step) {
      totals[step[0]] = days.reduce(function (sum, day) { return sum + (Number(day[step[0]]) || 0); }, 0);
    });
    var entered = totals.entered;
    var body = $('funnel-table').tBodies[0];
    clear(body);
    var width = 420, labelW = 92, valueW = 78, rowH = 26, barMax = width - labelW - valueW;
    var chart = svg('svg', {
      viewBox: '0 0 ' + width + ' ' + (rowH * FUNNEL.length + 4), width: width, height: rowH * FUNNEL.length + 4,
      role: 'img', 'aria-label': 'Funnel of this activity, last ' + FUNNEL_DAYS + ' days: ' + FUNNEL.map(function (step) {
        return step[1] + ' ' + totals[step[0]];
      }).join(', '), 'class': 'chart'
    });
    var scale = Math.max(1, entered, totals.created, totals.in_calendars, totals.clickers);
    FUNNEL.forEach(function (step, i) {
      var count = totals[step[0]], y = 2 + i * rowH, w = barMax * count / scale;
      var row = el('tr', '');
      var head = el('th', '', step[1]);
      head.setAttribute('scope', 'row');
      row.appendChild(head);
      var cell = el('td', '', String(count));
      cell.setAttribute('data-figure', step[0]);
      row.appendChild(cell);
      row.appendChild(el('td', '', share(count, entered)));
      body.appendChild(row);
      chart.appendChild(svg('text', { x: labelW - 8, y: y + 17, 'text-anchor': 'end', fill: '#16325c', 'font-size': 12 }, step[1]));
      var bar = svg('rect', { x: labelW, y: y + 4, width: Math.max(w, count ? 1 : 0).toFixed(1), height: rowH - 8, fill: '#007a5a', 'data-figure': step[0], 'data-value': count });
      bar.appendChild(svg('title', {}, step[1] + ': ' + count));
      chart.appendChild(bar);
      chart.appendChild(svg('text', { x: (labelW + w + 6).toFixed(1), y: y + 17, fill: '#16325c', 'font-size': 12 },
        count + (entered ? ' (' + share(count, entered) + ')' : '')));
    });
    var box = $('funnel-chart');
    clear(box);
    box.appendChild(chart);
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
