/*
 * Plays Journey Builder for the browser tests: iframes the activity page and speaks real
 * Postmonger (the vendored file) with it, bound to the activity's origin. Everything the
 * activity triggers is recorded in window.jb.triggered; every updateActivity payload in
 * window.jb.updates. A reply configured as null is never sent (JB's undocumented requests
 * may go unanswered).
 */
(function () {
  'use strict';
  window.jb = { updates: [], triggered: [], session: null };

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
    session.on('updateActivity', function (activity) { window.jb.updates.push(activity); });
  };

  window.jbSend = function (name, payload) { window.jb.session.trigger(name, payload); };
}());
