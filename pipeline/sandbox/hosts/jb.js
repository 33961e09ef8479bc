/*
 * Plays Journey Builder: iframes the activity page and speaks real Postmonger (the vendored file)
 * with it, bound to the activity's origin. Everything the activity triggers is recorded in
 * window.jb.triggered; every updateActivity payload in window.jb.updates. A reply configured as
 * null is never sent (JB's undocumented requests may go unanswered).
 *
 * The browser tests call startJB(config) themselves. In the live sandbox (`rokt-sfmc sandbox up`)
 * the page starts itself from the host server's jb/context (the signed-in tenant, its saved
 * activity or a fresh one, a fuel2token, the entry-source schema), shows JB's Back/Next/Done and
 * posts each updateActivity (Done) to jb/activity, which keeps it for `rokt-sfmc jb-simulate`.
 */
(function () {
  'use strict';
  window.jb = { updates: [], triggered: [], session: null, step: 1, steps: 3 };

  var REPLIES = {
    requestTokens: ['requestedTokens', 'tokens'],
    requestEndpoints: ['requestedEndpoints', 'endpoints'],
    requestSchema: ['requestedSchema', 'schema'],
    requestTriggerEventDefinition: ['requestedTriggerEventDefinition', 'triggerEventDefinition'],
    requestInteraction: ['requestedInteraction', 'interaction']
  };

  window.startJB = function (config) {
    var iframe = document.createElement('iframe');
    iframe.id = 'activity';
    iframe.title = 'Custom activity';
    iframe.src = config.src;
    document.getElementById('canvas').appendChild(iframe);
    var session = new Postmonger.Session({ connect: iframe, from: config.appOrigin, to: config.appOrigin });
    window.jb.session = session;
    var initSent = false;
    session.on('all', function (name) { window.jb.triggered.push(name); });
    session.on('ready', function () {
      if (!initSent) {  // JB answers only the first ready
        initSent = true;
        session.trigger('initActivity', config.activity);
      }
    });
    Object.keys(REPLIES).forEach(function (request) {
      session.on(request, function () {
        var reply = config[REPLIES[request][1]];
        if (reply !== null && reply !== undefined) { session.trigger(REPLIES[request][0], reply); }
      });
    });
    session.on('updateActivity', function (activity) {
      window.jb.updates.push(activity);
      if (config.onUpdate) { config.onUpdate(activity); }
    });
    session.on('nextStep', function () { setStep(window.jb.step + 1); });
    session.on('prevStep', function () { setStep(window.jb.step - 1); });
  };

  window.jbSend = function (name, payload) { window.jb.session.trigger(name, payload); };

  // -- the live sandbox ------------------------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  function status(text, bad) {
    $('jb-status').textContent = text;
    $('jb-status').className = bad ? 'bad' : '';
  }

  function setStep(step) {
    window.jb.step = Math.max(1, Math.min(window.jb.steps, step));
    $('jb-next').textContent = window.jb.step >= window.jb.steps ? 'Done' : 'Next';
  }

  function answer(response) {
    return response.json().catch(function () { return {}; }).then(function (data) {
      if (!response.ok) { throw new Error(data.error || ('HTTP ' + response.status)); }
      return data;
    });
  }

  function save(activity) {
    status('Saving the activity...');
    fetch('jb/activity', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(activity)
    }).then(answer).then(function (data) {
      status('Saved "' + (activity.name || activity.id) + '" to ' + data.path +
        '. Send contacts through it: rokt-sfmc jb-simulate --activity ' + data.path + ' --contacts 50');
    }).catch(function (error) { status('Not saved: ' + error.message, true); });
  }

  function applySchema() {
    var schema;
    try { schema = JSON.parse($('jb-schema').value); } catch (error) {
      status('The schema is not JSON: ' + error.message, true);
      return;
    }
    fetch('jb/schema', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(schema)
    }).then(answer).then(function () { location.reload(); })
      .catch(function (error) { status('Schema refused: ' + error.message, true); });
  }

  window.sandboxJB = function () {
    var params = new URLSearchParams(location.search);
    var running = params.get('view') === 'running';
    $('jb-bar').hidden = false;
    $('jb-apply').addEventListener('click', applySchema);
    $('jb-back').addEventListener('click', function () { window.jbSend('clickedBack'); });
    $('jb-next').addEventListener('click', function () { window.jbSend('clickedNext'); });
    fetch('jb/context?' + params.toString()).then(answer).then(function (context) {
      $('jb-tenant').textContent = 'tenant ' + context.tenant;
      $('jb-schema').value = JSON.stringify(context.schema, null, 2);
      if (running && !context.saved) {
        status('No saved activity yet: configure one and press Done first.', true);
        return;
      }
      window.jb.steps = (context.activity.wizardSteps || []).length || 3;
      setStep(1);
      $('jb-footer').hidden = running;
      context.src = context.activityBase + (running ? 'running.html' : 'index.html');
      context.onUpdate = save;
      window.startJB(context);
      if (context.saved) { status('Opened the saved activity ' + (context.activity.name || context.activity.id) + '.'); }
    }).catch(function (error) { status(error.message, true); });
  };

  if (document.body.dataset.sandbox === 'live') { window.sandboxJB(); }
}());
