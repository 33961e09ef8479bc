/* Which Journey Builder framed this page, and whether it is one we accept (settings.json's
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

  window.JbOrigin = { originMatches: originMatches, parentOrigin: parentOrigin };
})();
