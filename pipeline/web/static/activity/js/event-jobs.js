/* An event job's progress (a correction, a cancel or a withdrawal of events already sent; the
   API's GET /event-jobs/<id>), in words, and its polling until it is done. Shared by the
   activity page (the step where the event is edited or cancelled) and the running view.
   Everything reaches the page as textContent, never as HTML. */
(function () {
  'use strict';

  var POLL_MS = 1000;
  var RETRY_MS = 5000;
  var TITLES = {
    correct: ['Updating the events already sent', 'Events already sent: update finished'],
    cancel: ['Deleting the events from subscribers\' calendars', 'Events deleted from subscribers\' calendars'],
    withdraw: ['Removing a contact\'s events', 'A contact\'s events: removal finished']
  };
  // what the job did, by kind: the outcomes that are its work (skipped and failed come after)
  var DONE_OUTCOMES = {
    correct: [['updated', 'Updated in calendars'], ['unchanged', 'Already up to date (nothing sent)']],
    cancel: [['cancelled', 'Deleted from calendars']],
    withdraw: [['withdrawn', 'Removed from the contact\'s calendars']]
  };
  var SKIPPED = {
    kept: 'the contact\'s values no longer fit the new version: the old event stays',
    ended: 'the event is already over',
    not_held: 'no longer in the calendar (removed, cancelled or never added)',
    gone: 'its record is past the ledger\'s retention'
  };

  function node(tag, className, text) {
    var item = document.createElement(tag);
    if (className) { item.className = className; }
    if (text !== undefined) { item.textContent = text; }
    return item;
  }

  function clear(item) { while (item.firstChild) { item.removeChild(item.firstChild); } }

  function count(n) { return String(Number(n) || 0); }

  function when(iso) {
    var date = iso ? new Date(iso) : null;
    return date && !isNaN(date.getTime()) ? date.toLocaleString() : String(iso || '');
  }

  function title(job) {
    var titles = TITLES[job.kind] || ['Event job', 'Event job finished'];
    return titles[job.state === 'done' ? 1 : 0];
  }

  /* One line for screen readers, changed only when the job starts, finishes or fails more. */
  function stateLine(job) {
    if (job.state === 'planning') { return title(job) + ': finding the events\u2026'; }
    var line = title(job) + (job.state === 'done' ? ': ' : ' (running): ') + count(job.total) +
      (Number(job.total) === 1 ? ' event' : ' events');
    return line + (Number(job.failed) ? ', ' + count(job.failed) + ' failed.' : '.');
  }

  /* The skeleton once per container (so its live region exists before it changes). */
  function skeleton(container, id) {
    clear(container);
    container.className = 'job';
    container.setAttribute('data-job', id);
    var heading = node('p', 'job-title');
    heading.id = container.id + '-title';
    heading.setAttribute('tabindex', '-1');
    var bar = node('progress', 'job-bar');
    bar.setAttribute('aria-labelledby', heading.id);
    var live = node('p', 'job-state sr-only');
    live.setAttribute('role', 'status');
    container.appendChild(heading);
    container.appendChild(bar);
    container.appendChild(node('dl', 'job-figures event-details'));
    container.appendChild(node('p', 'job-who hint'));
    container.appendChild(live);
  }

  function figure(list, name, label, value) {
    var detail = node('dd', '', value);
    detail.setAttribute('data-figure', name);
    list.appendChild(node('dt', '', label));
    list.appendChild(detail);
  }

  /* `job` as the API answers it, into `container` (an element with an id). */
  function render(container, job) {
    if (container.getAttribute('data-job') !== job.id || !container.querySelector('.job-title')) {
      skeleton(container, job.id);
    }
    container.setAttribute('data-state', job.state);
    container.querySelector('.job-title').textContent = title(job);
    var bar = container.querySelector('.job-bar');
    bar.max = Math.max(1, Number(job.total) || 0);
    if (job.state === 'planning') { bar.removeAttribute('value'); }  // indeterminate: not counted yet
    else { bar.value = job.state === 'done' ? bar.max : Math.min(bar.max, Number(job.done) || 0); }

    var list = container.querySelector('.job-figures');
    clear(list);
    figure(list, 'done', 'Done', job.state === 'planning' ? 'finding the events\u2026' :
      count(job.done) + ' of ' + count(job.total));
    figure(list, 'toDo', 'To do', count(job.toDo));
    var outcomes = job.outcomes || {};
    (DONE_OUTCOMES[job.kind] || []).forEach(function (pair) {
      figure(list, pair[0], pair[1], count(outcomes[pair[0]]));
    });
    var skipped = job.skipped || {};
    var reasons = Object.keys(SKIPPED).filter(function (name) { return Number(skipped[name]); });
    var total = reasons.reduce(function (sum, name) { return sum + Number(skipped[name]); }, 0);
    figure(list, 'skipped', 'Skipped', count(total));
    if (reasons.length) {  // a second description of "Skipped": by reason
      var why = node('ul', 'job-skipped');
      reasons.forEach(function (name) {
        var item = node('li', '', count(skipped[name]) + ': ' + SKIPPED[name]);
        item.setAttribute('data-reason', name);
        why.appendChild(item);
      });
      list.appendChild(node('dd', 'job-reasons')).appendChild(why);
    }
    figure(list, 'failed', 'Failed', count(job.failed));
    if (Number(job.failed)) {
      list.appendChild(node('dd', 'hint', 'Rokt refused these: each is in the dead letters with its reason and can be replayed.'));
    }
    if (Number(job.beyondRetention)) {
      figure(list, 'beyondRetention', 'Not reachable', count(job.beyondRetention) +
        ' sent earlier: their records are past the ledger\'s retention');
    }

    // why contacts were kept or failed, grouped ("missing value for City \u00d73")
    var grouped = {};
    Object.keys(job.notes || {}).forEach(function (id) {
      var reason = String(job.notes[id]);
      grouped[reason] = (grouped[reason] || 0) + 1;
    });
    if (Object.keys(grouped).length) {
      var notes = node('ul', 'job-notes');
      Object.keys(grouped).forEach(function (reason) {
        var item = node('li', '', reason + ' ');
        item.appendChild(node('span', 'times', '\u00d7' + grouped[reason]));
        notes.appendChild(item);
      });
      list.appendChild(node('dt', '', 'Why'));
      list.appendChild(node('dd', '')).appendChild(notes);
    }

    container.querySelector('.job-who').textContent = 'Started by ' + (job.startedBy || 'unknown') +
      (job.startedAt ? ', ' + when(job.startedAt) : '') + '.' +
      (job.finishedAt ? ' Finished ' + when(job.finishedAt) + '.' : '') +
      (job.reason ? ' Reason: ' + job.reason : '');
    var live = container.querySelector('.job-state');
    var line = stateLine(job);
    if (live.textContent !== line) { live.textContent = line; }
    container.hidden = false;
  }

  /* Ask `load` (a function answering a Promise of the job) until the job is done, giving each
     answer to `update`; `failed(error)` hears a failed look (it is retried). Returns stop(). */
  function watch(load, update, failed) {
    var timer = null;
    var stopped = false;
    function look() {
      timer = null;
      load().then(function (job) {
        if (stopped) { return; }
        update(job);
        if (job.state !== 'done') { timer = setTimeout(look, POLL_MS); }
      }).catch(function (error) {
        if (stopped) { return; }
        if (failed) { failed(error); }
        timer = setTimeout(look, RETRY_MS);
      });
    }
    look();
    return function stop() {
      stopped = true;
      if (timer) { clearTimeout(timer); timer = null; }
    };
  }

  window.EventJobs = { render: render, watch: watch, title: title };
})();
