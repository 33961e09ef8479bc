/* Which Journey Builder framed this page, whether it is one we accept (settings.json's
   allowedOrigins, from JB_ALLOWED_ORIGINS). Shared by the activity page and the running view. */
(function () {
  'use strict';

  function escapeRegExp(text) { return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'); }

  /* A pattern's `*` stands for one or more of [A-Za-z0-9-] (one DNS label, or a port). */
  function originMatches(origin, patterns) {
    return (patterns || []).some(function (pattern) {
      var parts = String(pattern).trim().split('*').map(escapeRegExp);
      return parts.join('') !== '' && new RegExp('^' + parts.join('[A-Za-z0-9-]+') + '$').test(origin);
    });
  }

  /* The framing page's origin: ancestorOrigins where the browser has it, else the referrer. */
  function parentOrigin() {
    if (window.parent === window) { return ''; }
    if (window.location.ancestorOrigins && window.location.ancestorOrigins.length) {
      return window.location.ancestorOrigins[0];
    }
    try { return new URL(document.referrer).origin; } catch (e) { return ''; }
  }

  function refused(message) {
    var error = new Error(message);
    error.refused = true;  // shown as it is, not as a failure to start
    return error;
  }

  /* settings.json, then a Postmonger session that hears only from, and speaks only to, the
     Journey Builder that framed us: resolves {settings, origin, session}. */
  function connect() {
    return fetch('settings.json', { credentials: 'omit' }).then(function (response) {
      if (!response.ok) { throw new Error('settings.json answered ' + response.status); }
      return response.json();
    }).then(function (settings) {
      var origin = parentOrigin();
      if (!origin || !originMatches(origin, settings.allowedOrigins)) {
        throw refused('This page only works inside Journey Builder' +
          (origin ? ' (framed by ' + origin + ', which is not allowed).' : '.'));
      }
      if (typeof window.Postmonger === 'undefined') { throw refused('Postmonger did not load.'); }
      var session = new window.Postmonger.Session({ from: origin, to: origin });
      return { settings: settings, origin: origin, session: session };
    });
  }

  window.JbOrigin = { originMatches: originMatches, parentOrigin: parentOrigin, connect: connect };
})();
