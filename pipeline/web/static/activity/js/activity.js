/*
 * Rokt Calendar Event: the custom activity's configuration UI inside Journey Builder.
 *
 * settings.json -> parent-origin check -> Postmonger session bound to that origin -> ready ->
 * initActivity (restore) -> requestTokens/requestEndpoints -> POST {apiBase}/session ->
 * requestSchema (fallbacks requestTriggerEventDefinition, requestInteraction) ->
 * step 1 choose/create an event -> step 2 map placeholders -> step 3 review -> updateActivity.
 *
 * Every piece of data reaches the page through textContent or form values, never as HTML.
 */
(function () {
  'use strict';

  var SUBSCRIPTION_DEFAULT = '{{Contact.Attribute."Calendar Subscription".CalendarSubscriptionId}}';
  var OWN_KEYS = ['contactKey', 'templateId', 'subscriptionId', 'releaseEventDefinitionKey',
    'releaseOn', 'releaseAfterSeconds', 'cancelOnStop'];
  var REPLY_TIMEOUT_MS = 3000;     // JB's undocumented requests may never be answered
  var TOKEN_TIMEOUT_MS = 10000;
  var PER_PAGE = 20;
  var STEP_KEYS = { event: 1, fields: 2, review: 3, step1: 1, step2: 2, step3: 3 };  // config.json's wizardSteps
  var SIMPLE_NAME = /^[A-Za-z0-9_]+$/;
  var EVENT_BINDING = /^\{\{Event\.([^."{}]+)\.(?:"([^"]*)"|([A-Za-z0-9_]+))\}\}$/;
  var ATTRIBUTE_BINDING = /^\{\{Contact\.Attribute\.(?:"([^"]*)"|([A-Za-z0-9_]+))\.(?:"([^"]*)"|([A-Za-z0-9_]+))\}\}$/;

  var state = {
    settings: null,
    session: null,
    activity: null,
    token: '',
    fuel2token: '',
    eventKey: '',           // the journey's entry event definition key
    fields: [],             // entry-source fields: [{name, type}]
    templates: [],
    total: 0,
    page: 1,
    query: '',
    template: null,         // the chosen template (API item, with placeholders)
    mappings: {},           // placeholder name -> {kind, field, eventKey, set, attr, value, original, auto}
    restored: null,         // what the saved inArguments said
    subscription: SUBSCRIPTION_DEFAULT,
    releaseKey: '',
    releaseOn: 'accepted',
    releaseAfter: '3600',
    cancelOnStop: false,    // saved as {cancelOnStop: true} only when on (absent: off)
    samples: {},
    step: 1,
    dirty: false,
    previewSeq: 0,
    mode: 'choose',         // choose | create | edit (step 1's panel)
    editing: null,          // the template being edited (mode edit)
    loadedZone: '',         // the time zone of the event the form was filled from (edit, duplicate)
    zones: [],              // [{id, windows}] from the API: what the time-zone list offers
    showing: false,         // the problem list is shown: re-check it as the marketer fixes things
    sent: null,             // GET /templates/<id>/sent of the chosen event: {templateId, held, beyondRetention, archived}
    job: null,              // the event job shown under the chosen event (a correction or a cancel)
    stopJob: null,          // stops polling that job
    cancelCount: 0,         // the count the cancel confirmation names (sent as confirmCount)
    applyAnswer: null       // resolves the "apply the change to the sent events?" question
  };

  // ------------------------------------------------------------------ small DOM helpers
  function $(id) { return document.getElementById(id); }

  function el(tag, props, children) {
    var node = document.createElement(tag);
    Object.keys(props || {}).forEach(function (key) {
      var value = props[key];
      if (value === undefined || value === null) { return; }
      if (key === 'text') { node.textContent = value; }
      else if (key === 'className') { node.className = value; }
      else if (key === 'value' || key === 'checked' || key === 'disabled' || key === 'type') { node[key] = value; }
      else { node.setAttribute(key, value); }
    });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    });
    return node;
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

  function show(node, visible) { node.hidden = !visible; }

  function setStatus(text) {
    var node = $('status');
    node.textContent = text || '';
    show(node, Boolean(text));
  }

  function fatal(text) {
    var node = $('fatal');
    node.textContent = text;
    show(node, true);
    show($('app'), false);
    document.querySelector('.steps').hidden = true;
    document.querySelector('.actions').hidden = true;
    setStatus('');
  }


  // ------------------------------------------------------------------ Postmonger
  var waiting = {};

  /* Trigger `request`; resolve with the `reply` payload, or null when none comes in time. */
  function ask(request, reply, timeout) {
    return new Promise(function (resolve) {
      var timer = setTimeout(function () { delete waiting[reply]; resolve(null); }, timeout || REPLY_TIMEOUT_MS);
      waiting[reply] = function (data) { clearTimeout(timer); delete waiting[reply]; resolve(data); };
      state.session.trigger(request);
    });
  }

  function onReply(reply, late) {
    state.session.on(reply, function (data) {
      if (waiting[reply]) { waiting[reply](data); } else if (late) { late(data); }
    });
  }

  function markDirty() {
    if (!state.dirty && state.session) {
      state.dirty = true;
      state.session.trigger('setActivityDirtyState', true);
    }
  }

  // ------------------------------------------------------------------ the API
  function api(method, path, body, retried) {
    var options = {
      method: method,
      credentials: 'omit',
      headers: { Accept: 'application/json', Authorization: 'Bearer ' + state.token }
    };
    if (body !== undefined) {
      options.headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(body);
    }
    return fetch(state.settings.apiBase + path, options).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (response.status === 401 && !retried && path !== '/session') {
          // the session token lives 15 minutes: ask JB for a fresh fuel2token once
          return openSession(true).then(function () { return api(method, path, body, true); });
        }
        if (!response.ok) {
          var error = new Error((data && data.message) || ('HTTP ' + response.status));
          error.status = response.status;
          error.data = data || {};
          throw error;
        }
        return data;
      });
    });
  }

  function openSession(refresh) {
    var tokens = refresh ? ask('requestTokens', 'requestedTokens', TOKEN_TIMEOUT_MS)
      : Promise.resolve({ fuel2token: state.fuel2token });
    return tokens.then(function (data) {
      var fuel2token = data && data.fuel2token;
      if (!fuel2token) { throw new Error('Journey Builder sent no token for this page.'); }
      state.fuel2token = fuel2token;
      return fetch(state.settings.apiBase + '/session', {
        method: 'POST',
        credentials: 'omit',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({ fuel2token: fuel2token })
      });
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok || !data.token) {
          throw new Error('The server refused Journey Builder\'s token (' + response.status + '): ' +
            ((data && data.message) || 'no session'));
        }
        state.token = data.token;
      });
    });
  }

  // ------------------------------------------------------------------ bindings
  function fieldBinding(eventKey, name) {
    return '{{Event.' + eventKey + '.' + (SIMPLE_NAME.test(name) ? name : '"' + name + '"') + '}}';
  }

  function attributeBinding(set, attr) {
    return '{{Contact.Attribute."' + set + '"."' + attr + '"}}';
  }

  /* A saved inArgument value back into a mapping; `original` keeps the exact text until edited. */
  function parseBinding(value) {
    var text = String(value);
    var match = EVENT_BINDING.exec(text);
    if (match) {
      return { kind: 'field', eventKey: match[1], field: match[2] !== undefined ? match[2] : match[3], original: text };
    }
    match = ATTRIBUTE_BINDING.exec(text);
    if (match) {
      return {
        kind: 'attribute', set: match[1] !== undefined ? match[1] : match[2],
        attr: match[3] !== undefined ? match[3] : match[4], original: text
      };
    }
    if (text.indexOf('{{') === -1) { return { kind: 'fixed', value: text, original: text }; }
    return { kind: 'raw', original: text };
  }

  function bindingOf(mapping) {
    if (mapping.original !== undefined) { return mapping.original; }
    if (mapping.kind === 'field') { return fieldBinding(mapping.eventKey || state.eventKey, mapping.field); }
    if (mapping.kind === 'attribute') { return attributeBinding(mapping.set.trim(), mapping.attr.trim()); }
    if (mapping.kind === 'fixed') { return mapping.value; }
    return null;
  }

  // The label under the icon: the template's name, else its title with each placeholder
  // replaced by its default text (or dropped) and the gaps tidied (jbsim.activity_name).
  function activityName(template) {
    var name = String(template.name || '').split(/\s+/).filter(Boolean).join(' ');
    if (!name) {
      var text = String(template.title || '').replace(/\{\{([\s\S]*?)\}\}/g, function (_, inner) {
        var fallback = /\|\s*default:\s*"((?:[^"\\]|\\.)*)"/.exec(inner);
        return fallback ? fallback[1].replace(/\\"/g, '"') : '';
      });
      text = text.split(/\s+/).filter(Boolean).join(' ').replace(/\s+([,;:.!?])/g, '$1');
      name = text.replace(/^[\s,;:-]+|[\s,;:-]+$/g, '');
    }
    return Array.from(name).slice(0, 100).join('');
  }

  /* How an event is called in the list, the summaries and the canvas label. */
  function displayName(template) { return activityName(template) || '(untitled event)'; }

  /* Letters and digits only, lower case: `{{home_city}}` and `{{HomeCity}}` find "Home City". */
  function loose(name) { return String(name).toLowerCase().replace(/[\s_.\-]/g, ''); }

  /* Edit distance with transpositions ("Frist" -> "First" is 1). */
  function distance(a, b) {
    var rows = [];
    for (var i = 0; i <= a.length; i++) {
      rows.push([i]);
      for (var j = 1; j <= b.length; j++) {
        if (i === 0) { rows[0].push(j); continue; }
        var cost = a[i - 1] === b[j - 1] ? 0 : 1;
        var best = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost);
        if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) { best = Math.min(best, rows[i - 2][j - 2] + 1); }
        rows[i].push(best);
      }
    }
    return rows[a.length][b.length];
  }

  /* The entry-source field nearest to a placeholder nothing matched: a small typo (at most a
     third of its letters), or a field whose name ends with it ("City" -> "Home City"). */
  function suggestField(name) {
    var target = loose(name);
    var best = null;
    state.fields.forEach(function (field) {
      var key = loose(field.name);
      var d = distance(target, key);
      if (target.length >= 3 && key.length > target.length && key.slice(-target.length) === target) { d = Math.min(d, 1.5); }
      if (d <= Math.max(1, Math.floor(target.length / 3)) + 0.5 && (!best || d < best.d)) { best = { d: d, name: field.name }; }
    });
    return best ? best.name : null;
  }

  // ------------------------------------------------------------------ restore
  function restore(activity) {
    var execute = (activity.arguments && activity.arguments.execute) || {};
    var merged = {};
    (execute.inArguments || []).forEach(function (item) {
      if (item && typeof item === 'object') {
        Object.keys(item).forEach(function (key) { merged[key] = item[key]; });
      }
    });
    if (Object.prototype.hasOwnProperty.call(merged, 'subscriptionId')) { state.subscription = String(merged.subscriptionId); }
    if (merged.releaseEventDefinitionKey !== undefined) { state.releaseKey = String(merged.releaseEventDefinitionKey); }
    if (merged.releaseOn === 'accepted' || merged.releaseOn === 'confirmed') { state.releaseOn = merged.releaseOn; }
    if (merged.releaseAfterSeconds !== undefined && /^\d+$/.test(String(merged.releaseAfterSeconds))) {
      state.releaseAfter = String(merged.releaseAfterSeconds);
    }
    state.cancelOnStop = merged.cancelOnStop === true || String(merged.cancelOnStop).toLowerCase() === 'true';
    if (!merged.templateId) { return; }
    var mappings = {};
    Object.keys(merged).forEach(function (key) {
      if (OWN_KEYS.indexOf(key) === -1) { mappings[key] = parseBinding(merged[key]); }
    });
    state.restored = { templateId: String(merged.templateId), mappings: mappings };
  }

  function mappingsFor(template) {
    var restored = state.restored && state.restored.templateId === template.id ? state.restored.mappings : null;
    var mappings = {};
    template.placeholders.forEach(function (placeholder) {
      var name = placeholder.name;
      if (restored) {
        mappings[name] = restored[name] ? Object.assign({}, restored[name]) : { kind: 'default' };
      } else {
        mappings[name] = { kind: 'default', auto: true };
      }
    });
    state.mappings = mappings;
    autoMatch();
  }

  /* Same-named entry-source fields, for placeholders nobody has touched yet. */
  function autoMatch() {
    if (!state.template) { return; }
    Object.keys(state.mappings).forEach(function (name) {
      var mapping = state.mappings[name];
      if (!mapping.auto) { return; }
      var exact = state.fields.filter(function (f) { return f.name === name; })[0];
      var similar = state.fields.filter(function (f) { return loose(f.name) === loose(name); })[0];
      var field = exact || similar;
      if (field) { state.mappings[name] = { kind: 'field', field: field.name, auto: true }; }
    });
  }

  // ------------------------------------------------------------------ entry-source schema
  function parseSchema(data) {
    var list = (data && Array.isArray(data.schema)) ? data.schema : [];
    var fields = [];
    list.forEach(function (item) {
      if (!item || typeof item.key !== 'string' || item.key.indexOf('Event.') !== 0) { return; }
      var rest = item.key.slice('Event.'.length);
      var dot = rest.indexOf('.');
      if (dot <= 0) { return; }
      if (!state.eventKey) { state.eventKey = rest.slice(0, dot); }
      var name = (typeof item.name === 'string' && item.name) ? item.name : rest.slice(dot + 1);
      if (!fields.some(function (f) { return f.name === name; })) { fields.push({ name: name, type: item.type || '' }); }
    });
    return fields;
  }

  function useSchema(data) {
    var fields = parseSchema(data);
    if (fields.length) {
      state.fields = fields;
      autoMatch();
      renderMappings();
    }
    return fields.length > 0;
  }

  function useTrigger(data) {
    if (!state.eventKey && data && typeof data.eventDefinitionKey === 'string') { state.eventKey = data.eventDefinitionKey; }
  }

  function useInteraction(data) {
    var trigger = data && Array.isArray(data.triggers) ? data.triggers[0] : null;
    var key = trigger && trigger.metaData && trigger.metaData.eventDefinitionKey;
    if (!state.eventKey && typeof key === 'string') { state.eventKey = key; }
  }

  function loadSchema() {
    return ask('requestSchema', 'requestedSchema').then(function (data) {
      if (useSchema(data) && state.eventKey) { return null; }
      return ask('requestTriggerEventDefinition', 'requestedTriggerEventDefinition').then(function (ted) {
        useTrigger(ted);
        if (ted && ted.schema) { useSchema({ schema: ted.schema.fields || ted.schema }); }
        if (state.eventKey) { return null; }
        return ask('requestInteraction', 'requestedInteraction').then(useInteraction);
      });
    }).then(renderSchemaHint);
  }

  function renderSchemaHint() {
    var hint = $('schema-hint');
    if (state.fields.length) {
      hint.textContent = 'Entry source ' + (state.eventKey || '(unknown key)') + ': ' + state.fields.length +
        ' fields. Placeholders with the same name as a field are matched for you.';
    } else {
      hint.textContent = 'Journey Builder did not tell us the entry source\'s fields (is an entry source ' +
        'configured?). You can still use contact attributes, fixed values or the event\'s defaults.';
    }
    renderMappings();
  }

  // ------------------------------------------------------------------ step 1: choose
  function formatStart(template) {
    var start = String(template.start || '');
    var match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(start);
    var when = match ? match[1] + ' ' + match[2] : start;
    if (template.allDay && match) { when = match[1] + ' (all day)'; }
    return when + (template.timezone ? ' · ' + template.timezone : '');
  }

  function loadTemplates(append) {
    var page = append ? state.page + 1 : 1;
    var query = '?q=' + encodeURIComponent(state.query) + '&page=' + page + '&perPage=' + PER_PAGE;
    return api('GET', '/templates' + query).then(function (data) {
      state.page = page;
      state.total = data.total || 0;
      state.templates = append ? state.templates.concat(data.items || []) : (data.items || []);
      renderTemplates();
    }).catch(function (error) { setStatus('Could not load events: ' + error.message); });
  }

  function renderTemplates() {
    var list = $('template-list');
    clear(list);
    state.templates.forEach(function (template) {
      var chosen = state.template && state.template.id === template.id;
      var button = el('button', {
        type: 'button', className: 'template' + (chosen ? ' chosen' : ''),
        'data-id': template.id, 'aria-pressed': chosen ? 'true' : 'false'
      }, [
        el('span', { className: 'template-name', text: displayName(template) }),
        el('span', { className: 'template-title', text: template.title }),
        el('span', { className: 'template-meta', text: formatStart(template) + (template.archivedAt ? ' \u00b7 archived' : '') })
      ]);
      button.addEventListener('click', function () { chooseTemplate(template); });
      list.appendChild(el('li', {}, [button]));
    });
    $('template-count').textContent = state.total ?
      state.total + (state.total === 1 ? ' event' : ' events') + ', newest first' :
      (state.query ? 'No event matches "' + state.query + '".' : 'No events yet: create one.');
    show($('template-more'), state.templates.length < state.total);
  }

  function renderChosen() {
    var node = $('chosen-summary');
    clear(node);
    if (state.template) {
      node.appendChild(el('span', { text: 'Chosen: ' }));
      node.appendChild(el('strong', { text: displayName(state.template) }));
      node.appendChild(el('span', { text: ' · ' + formatStart(state.template) }));
      node.appendChild(el('span', { className: 'chosen-title', text: state.template.title }));
    }
    show($('chosen'), Boolean(state.template));
    show($('delete-confirm'), false);
    show($('cancel-confirm'), false);
    renderSent();
  }

  function chooseTemplate(template, restoring) {
    if (!state.template || state.template.id !== template.id) {
      state.template = template;
      mappingsFor(template);
      forgetJob();
      if (!restoring) { markDirty(); }
    }
    renderTemplates();
    renderChosen();
    renderMappings();
    recheck();
    setStatus('');
    loadSent(template);
  }

  /* The same event as stored now (archived or restored): no change to the activity. */
  function refreshTemplate(template) {
    state.templates = state.templates.map(function (t) { return t.id === template.id ? template : t; });
    if (state.template && state.template.id === template.id) {
      template.placeholders = template.placeholders || state.template.placeholders;
      state.template = template;
    }
    renderTemplates();
    renderChosen();
  }

  /* After an edit: the same event with new text; mappings of placeholders it still has stay. */
  function replaceTemplate(template) {
    state.templates = state.templates.map(function (t) { return t.id === template.id ? template : t; });
    if (state.template && state.template.id === template.id) {
      var before = state.mappings;
      state.template = template;
      mappingsFor(template);
      template.placeholders.forEach(function (p) { if (before[p.name]) { state.mappings[p.name] = before[p.name]; } });
      autoMatch();
      markDirty();
    }
    renderTemplates();
    renderChosen();
    renderMappings();
  }

  function setMode(mode, template) {
    var form = mode !== 'choose';
    if (state.applyAnswer) { answerApply(null, true); }
    state.mode = mode;
    state.editing = mode === 'edit' ? template : null;
    $('mode-choose').setAttribute('aria-selected', form ? 'false' : 'true');
    $('mode-create').setAttribute('aria-selected', form ? 'true' : 'false');
    show($('choose-panel'), !form);
    show($('create-panel'), form);
    if (form) {
      clearFormErrors();
      if (template) { fillForm(template, mode === 'create'); } else if (mode === 'create' && state.formFrom) { resetForm(); }
      $('form-title').textContent = mode === 'edit' ? 'Edit event "' + displayName(template) + '"' :
        (template ? 'New event, copied from "' + displayName(template) + '"' : 'New event');
      renderEditNote();
      show($('edit-note'), mode === 'edit');
      $('create-submit').textContent = mode === 'edit' ? 'Save changes' : 'Create event';
      show($('form-cancel'), Boolean(template));
      $('tpl-name').focus();
    } else {
      $('template-search').focus();
    }
  }

  // ------------------------------------------------------------------ step 1: edit, duplicate, delete
  var FORM_FIELDS = ['name', 'title', 'description', 'location', 'start', 'end', 'notifyBefore'];

  function formInput(field) { return document.querySelector('#create-panel [name="' + field + '"]'); }

  function localInput(value) {
    var match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})/.exec(String(value || ''));
    return match ? match[1] : '';
  }

  function fillForm(template, copy) {
    state.formFrom = template.id;
    state.formDates = { start: template.start || '', end: template.end || '' };
    $('tpl-name').value = copy ? ('Copy of ' + displayName(template)).slice(0, 200) : (template.name || '');
    $('tpl-title').value = template.title || '';
    $('tpl-description').value = template.description || '';
    $('tpl-location').value = template.location || '';
    $('tpl-start').value = localInput(template.start);
    $('tpl-end').value = localInput(template.end);
    $('tpl-timezone').value = template.timezone || '';
    state.loadedZone = template.timezone || '';  // stored and accepted once: the server judges it, not the list
    $('tpl-notify').value = template.notifyBefore === null || template.notifyBefore === undefined ? '' : String(template.notifyBefore);
    $('tpl-allday').checked = Boolean(template.allDay);
    $('tpl-track').checked = Boolean(template.trackClicks);
    $('tpl-policy').value = template.missingFieldPolicy || 'strict';
    timeZoneHint();
  }

  function resetForm() {
    state.loadedZone = '';
    state.formFrom = null;
    state.formDates = null;
    $('create-panel').reset();
    timeZoneHint();
  }

  /* Anything typed in the form (the time zone and the selects alone do not count). */
  function formTouched() {
    return state.mode !== 'choose' && FORM_FIELDS.some(function (field) {
      var input = formInput(field);
      return input && String(input.value).trim() !== '';
    });
  }

  function askDelete() {
    $('delete-question').textContent = 'Delete "' + displayName(state.template) + '"? Journeys whose activity ' +
      'uses it stop sending it to new contacts. This cannot be undone.';
    show($('cancel-confirm'), false);
    show($('delete-confirm'), true);
    $('delete-no').focus();
  }

  function deleteChosen() {
    var template = state.template;
    $('delete-yes').disabled = true;
    api('DELETE', '/templates/' + encodeURIComponent(template.id)).then(function () {
      state.templates = state.templates.filter(function (t) { return t.id !== template.id; });
      state.total = Math.max(0, state.total - 1);
      state.template = null;
      state.mappings = {};
      markDirty();
      renderTemplates();
      renderChosen();
      renderMappings();
      setStatus('Deleted "' + displayName(template) + '".');
      $('template-search').focus();
    }).catch(function (error) {
      var text = error.status === 409 ?
        '"' + displayName(template) + '" cannot be deleted yet: ' + plural(error.data.openExecutions, 'contact is', 'contacts are') +
          ' still being sent this event. Try again when they have finished.' :
        'Could not delete "' + displayName(template) + '": ' + error.message;
      $('delete-question').textContent = text;
      $('delete-yes').hidden = error.status === 409;
      $('delete-no').textContent = 'OK';
      $('delete-no').focus();
    }).then(function () { $('delete-yes').disabled = false; });
  }

  function plural(count, one, many) {
    var n = Number(count) || 0;
    return (n || 'Some') + ' ' + (n === 1 ? one : many);
  }

  // ------------------------------------------------------------------ step 1: events already sent
  function eventsWord(count) {
    var n = Number(count) || 0;
    return n + (n === 1 ? ' event' : ' events');
  }

  function sentOf(template) {
    return template && state.sent && state.sent.templateId === template.id ? state.sent : null;
  }

  /* How many events of `template` Rokt holds (and a job running on them), for the chosen event. */
  function loadSent(template) {
    var id = template.id;
    var path = '/templates/' + encodeURIComponent(id);
    api('GET', path + '/sent').then(function (sent) {
      state.sent = sent;
      if (state.template && state.template.id === id) { renderSent(); }
    }).catch(function () { /* unknown: the actions that need the count stay hidden */ });
    api('GET', '/event-jobs?running=true').then(function (data) {
      var running = ((data && data.items) || []).filter(function (job) { return job.templateId === id; })[0];
      if (running && state.template && state.template.id === id) { followJob(running); }
    }).catch(function () { /* no progress to show */ });
  }

  function renderSent() {
    var template = state.template;
    var sent = sentOf(template);
    var held = sent ? Number(sent.held) || 0 : 0;
    var beyond = sent ? Number(sent.beyondRetention) || 0 : 0;
    var archived = Boolean(template && template.archivedAt);
    var words = held ? eventsWord(held) + ' sent with it ' + (held === 1 ? 'is' : 'are') + ' in subscribers\' calendars.' :
      'No event sent with it is in a calendar now.';
    if (beyond) {
      words += ' ' + eventsWord(beyond) + ' sent earlier ' + (beyond === 1 ? 'is' : 'are') +
        ' past the ledger\'s retention: no longer corrected or cancelled from here.';
    }
    $('sent-info').textContent = words;
    show($('sent-info'), held > 0 || beyond > 0);
    show($('event-cancel'), held > 0 && !archived);
    show($('archived-note'), archived);
    $('archived-text').textContent = archived ? 'Archived' + (template.archivedAt ? ' on ' + new Date(template.archivedAt).toLocaleString() : '') +
      ': its events were cancelled, and contacts who reach this step get no event (their status is "cancelled").' : '';
    if (state.mode === 'edit') { renderEditNote(); }
  }

  function renderEditNote() {
    var held = state.mode === 'edit' && sentOf(state.editing) ? Number(state.sent.held) || 0 : 0;
    $('edit-note').textContent = held ?
      eventsWord(held) + ' sent with this event ' + (held === 1 ? 'is' : 'are') + ' in subscribers\' calendars: ' +
        'when you save, you choose whether the change applies to ' + (held === 1 ? 'it' : 'them') +
        ' too, or only to contacts who reach this step from now on.' :
      'Changes apply to contacts who reach this step from now on. Events already sent to calendars are not changed.';
  }

  /* Saving an edit: with events of it in calendars, ask whether the change reaches them too.
     Resolves {held, apply}, or null when the marketer goes back to the form (or it cannot ask). */
  function applyChoice(template) {
    return api('GET', '/templates/' + encodeURIComponent(template.id) + '/sent').then(function (sent) {
      state.sent = sent;
      var held = Number(sent.held) || 0;
      if (!held) { return { held: 0, apply: false }; }
      return askApply(held).then(function (apply) { return apply === null ? null : { held: held, apply: apply }; });
    }, function (error) {
      if (error.status === 404) { return { held: 0, apply: false }; }  // deleted meanwhile: the save says so
      formError('form', 'Could not check how many events were already sent with this event (' + error.message +
        '): nothing was saved. Try again.');
      $('err-form').focus();
      return null;
    });
  }

  function askApply(held) {
    return new Promise(function (resolve) {
      state.applyAnswer = resolve;
      $('apply-question').textContent = eventsWord(held) + ' already sent with this template \u2014 apply the change to ' +
        (held === 1 ? 'it' : 'them') + ' too?';
      $('apply-yes').textContent = held === 1 ? 'Apply to the sent event too' : 'Apply to the ' + held + ' sent events too';
      show($('apply-confirm'), true);
      $('apply-yes').focus();
    });
  }

  /* true: apply, false: only future contacts, null: back to editing (focus on the form). */
  function answerApply(apply, quiet) {
    var resolve = state.applyAnswer;
    state.applyAnswer = null;
    show($('apply-confirm'), false);
    if (apply === null && !quiet) { $('tpl-name').focus(); }
    if (resolve) { resolve(apply); }
  }

  function askCancel() {
    var sent = sentOf(state.template);
    show($('delete-confirm'), false);
    cancelQuestion(sent ? Number(sent.held) || 0 : 0, '');
    $('cancel-reason').value = '';
    show($('cancel-yes'), true);
    show($('cancel-confirm'), true);
    $('cancel-reason').focus();
  }

  function cancelQuestion(held, before) {
    state.cancelCount = held;
    $('cancel-question').textContent = before + 'Delete ' + eventsWord(held) + ' from subscribers\' calendars? ' +
      'Contacts who reach this step later get no event.';
    $('cancel-yes').textContent = 'Delete ' + eventsWord(held);
  }

  /* Delete every event of it that Rokt holds (the count confirmed), and archive it. */
  function cancelChosen() {
    var template = state.template;
    var path = '/templates/' + encodeURIComponent(template.id);
    $('cancel-yes').disabled = true;
    api('POST', path + '/cancel', { reason: $('cancel-reason').value.trim(), confirmCount: state.cancelCount }).then(function (job) {
      show($('cancel-confirm'), false);
      setStatus('Deleting ' + eventsWord(state.cancelCount) + ' of "' + displayName(template) + '" from subscribers\' calendars. ' +
        'The event is archived: contacts who reach this step from now on get no event.');
      followJob(job);
      var title = $('job-panel-title');
      if (title) { title.focus(); }
      return api('GET', path).then(refreshTemplate);
    }).catch(function (error) {
      var held = error.data && typeof error.data.held === 'number' ? error.data.held : null;
      if (error.status === 409 && held !== null) {
        if (held === 0) {
          $('cancel-question').textContent = 'No event of it is in a calendar any more: nothing to delete.';
          show($('cancel-yes'), false);
        } else {
          cancelQuestion(held, 'The count changed meanwhile. ');
        }
        if (state.sent && state.sent.templateId === template.id) { state.sent.held = held; renderSent(); }
        $('cancel-no').focus();
      } else {
        $('cancel-question').textContent = 'Could not cancel "' + displayName(template) + '": ' + error.message;
        show($('cancel-yes'), false);
        $('cancel-no').focus();
      }
    }).then(function () { $('cancel-yes').disabled = false; });
  }

  function closeCancel() {
    show($('cancel-confirm'), false);
    show($('cancel-yes'), true);
    ($('event-cancel').hidden ? $('event-edit') : $('event-cancel')).focus();
  }

  /* An archived event serves the contacts who reach its step from now on again. */
  function restoreChosen() {
    var template = state.template;
    $('event-restore').disabled = true;
    api('POST', '/templates/' + encodeURIComponent(template.id) + '/restore').then(function (restored) {
      refreshTemplate(restored);
      setStatus('Restored "' + displayName(restored) + '": contacts who reach this step from now on get the event again. ' +
        'The events cancelled are not sent again.');
      $('event-edit').focus();
    }).catch(function (error) {
      setStatus('Could not restore "' + displayName(template) + '": ' + error.message);
    }).then(function () { $('event-restore').disabled = false; });
  }

  /* Show `job` under the chosen event and poll it until it is done. */
  function followJob(job) {
    if (state.job && state.job.id === job.id && state.stopJob) { return; }
    forgetJob();
    state.job = job;
    showJob(job);
    if (job.state === 'done') { return; }
    state.stopJob = window.EventJobs.watch(function () {
      return api('GET', '/event-jobs/' + encodeURIComponent(job.id));
    }, function (current) {
      state.job = current;
      showJob(current);
      if (current.state === 'done') {
        state.stopJob = null;
        if (state.template && state.template.id === current.templateId) { loadSent(state.template); }
      }
    }, function (error) { setStatus('Could not load the progress (' + error.message + '): trying again.'); });
  }

  function showJob(job) {
    var panel = $('job-panel');
    if (state.template && job.templateId === state.template.id) { window.EventJobs.render(panel, job); } else { show(panel, false); }
  }

  function forgetJob() {
    if (state.stopJob) { state.stopJob(); }
    state.stopJob = null;
    state.job = null;
    show($('job-panel'), false);
  }

  // ------------------------------------------------------------------ step 1: the time zone
  function zoneKey(text) { return String(text).replace(/_/g, ' ').replace(/\s+/g, ' ').trim().toLowerCase(); }

  /* What the marketer typed as a listed zone: its id in any case, or a city ("Sydney") naming
     one zone; '' when it names none (the server then says why). Mirrors render.canonical_time_zone. */
  function resolveZone(text) {
    var key = zoneKey(text);
    if (!key) { return ''; }
    var ids = state.zones.map(function (z) { return z.id; });
    var exact = ids.filter(function (id) { return zoneKey(id) === key; });
    if (exact.length) { return exact[0]; }
    var cities = ids.filter(function (id) { return zoneKey(id.split('/').pop()) === key; });
    return cities.length === 1 ? cities[0] : '';
  }

  function zoneOffset(id) {
    try {
      var parts = new Intl.DateTimeFormat('en', { timeZone: id, timeZoneName: 'longOffset' }).formatToParts(new Date());
      var name = parts.filter(function (p) { return p.type === 'timeZoneName'; })[0];
      return name ? name.value.replace('GMT', 'UTC') : '';
    } catch (e) { return ''; }
  }

  function fillTimeZones(zones) {
    state.zones = zones;
    var list = $('timezones');
    clear(list);
    zones.forEach(function (zone) {
      list.appendChild(el('option', { value: zone.id, label: zone.id.replace(/_/g, ' ') + ' · ' + zone.windows }));
    });
    var mine = '';
    try { mine = resolveZone(Intl.DateTimeFormat().resolvedOptions().timeZone || ''); } catch (e) { mine = ''; }
    var button = $('timezone-mine');
    button.textContent = mine ? 'Use my time zone (' + mine + ')' : '';
    button.setAttribute('data-zone', mine);
    timeZoneHint(false);
  }

  function loadTimeZones() {
    return api('GET', '/timezones').then(function (data) { fillTimeZones((data && data.items) || []); })
      .catch(function () {
        var zones = [];
        try { zones = Intl.supportedValuesOf('timeZone'); } catch (e) { zones = []; }
        fillTimeZones(zones.map(function (id) { return { id: id, windows: '' }; }));
      });
  }

  /* The resolved zone in words under the field; a typed city becomes the zone's name. */
  function timeZoneHint(commit) {
    var input = $('tpl-timezone');
    var zone = resolveZone(input.value);
    if (commit && zone && zone !== input.value) { input.value = zone; }
    var mine = $('timezone-mine').getAttribute('data-zone') || '';
    show($('timezone-mine'), Boolean(mine) && zone !== mine);
    var offset = zone ? zoneOffset(zone) : '';
    $('timezone-hint').textContent = zone ? 'Start and end are local times in ' + zone + (offset ? ' (now ' + offset + ')' : '') + '.' :
      'The start and end are local times in this zone.';
    return zone;
  }

  // ------------------------------------------------------------------ step 1: the form
  function withSeconds(value) { return /T\d{2}:\d{2}$/.test(value) ? value + ':00' : value; }

  function clearFormErrors() {
    Array.prototype.forEach.call(document.querySelectorAll('#create-panel .error'), function (node) { node.textContent = ''; });
    Array.prototype.forEach.call(document.querySelectorAll('#create-panel [aria-invalid]'), function (node) { node.removeAttribute('aria-invalid'); });
  }

  function formError(field, message) {
    var node = $('err-' + field) || $('err-form');
    node.textContent = (node.textContent ? node.textContent + ' ' : '') + message;
    var input = formInput(field);
    if (input) { input.setAttribute('aria-invalid', 'true'); }
  }

  function clearFieldError(field) {
    var node = $('err-' + field);
    if (node) { node.textContent = ''; }
    var input = formInput(field);
    if (input) { input.removeAttribute('aria-invalid'); }
    if (!document.querySelector('#create-panel [aria-invalid="true"]')) { $('err-form').textContent = ''; }
  }

  /* A date as sent: an edited or copied event keeps its own text (an offset, seconds or a
     {{placeholder}} a date input cannot show) unless the marketer changed the date. */
  function formDate(field) {
    var value = $('tpl-' + field).value;
    var own = state.formDates ? state.formDates[field] : null;
    return own !== null && value === localInput(own) ? own : withSeconds(value);
  }

  function formBody() {
    var notify = $('tpl-notify').value.trim();
    return {
      name: $('tpl-name').value.trim(),
      title: $('tpl-title').value,
      description: $('tpl-description').value,
      location: $('tpl-location').value,
      start: formDate('start'),
      end: formDate('end'),
      timezone: timeZoneHint(true) || $('tpl-timezone').value.trim(),
      allDay: $('tpl-allday').checked,
      trackClicks: $('tpl-track').checked,
      notifyBefore: notify === '' || !/^\d+$/.test(notify) ? null : Number(notify),
      missingFieldPolicy: $('tpl-policy').value
    };
  }

  /* What the browser can tell before asking the server: [[field, message]]. */
  function formProblems() {
    var body = formBody();
    var list = [];
    if (!body.name) { list.push(['name', 'Give the event a name: it is how you find it in this list and on the canvas.']); }
    if (!body.title.trim()) { list.push(['title', 'Give the event a title: contacts see it in their calendar.']); }
    if (!body.start) { list.push(['start', 'Choose when the event starts.']); }
    if (!$('tpl-timezone').value.trim()) {
      list.push(['timezone', 'Choose a time zone: the start and end are local times in it (type a city, e.g. Sydney).']);
    } else if (state.zones.length && !resolveZone($('tpl-timezone').value) &&
               $('tpl-timezone').value.trim() !== state.loadedZone) {
      list.push(['timezone', 'Unknown time zone "' + $('tpl-timezone').value.trim() + '": type a city or region and pick it from the list.']);
    }
    var notify = $('tpl-notify').value.trim();
    if (notify !== '' && !/^\d+$/.test(notify)) { list.push(['notifyBefore', 'Whole minutes, 0 or more.']); }
    if ($('tpl-notify').validity && $('tpl-notify').validity.badInput) { list.push(['notifyBefore', 'Whole minutes, 0 or more.']); }
    return list;
  }

  /* Field errors shown, the summary says how many, focus on the first invalid field. */
  function showFormErrors(count) {
    $('err-form').textContent = count === 1 ? 'One problem: see the field marked below.' :
      count + ' problems: see the fields marked below.';
    var first = document.querySelector('#create-panel [aria-invalid="true"]');
    (first || $('err-form')).focus();
  }

  /* Create (or save the edited) event from the form; resolves with the template, or null when
     something is missing or the server refused it (the fields then say why). */
  function submitForm() {
    if (state.applyAnswer) {  // the question about the sent events is open: it is answered first
      $('apply-yes').focus();
      return Promise.resolve(null);
    }
    clearFormErrors();
    hideProblems();
    var local = formProblems();
    if (local.length) {
      local.forEach(function (pair) { formError(pair[0], pair[1]); });
      showFormErrors(local.length);
      return Promise.resolve(null);
    }
    var editing = state.mode === 'edit' ? state.editing : null;
    var body = formBody();
    $('create-submit').disabled = true;
    var decided = editing ? applyChoice(editing) : Promise.resolve({ held: 0, apply: false });
    return decided.then(function (choice) {
      return choice ? sendForm(editing, body, choice) : null;
    }).then(function (template) { $('create-submit').disabled = false; return template; });
  }

  /* The form's event stored (an edit with `choice.apply` also corrects the events already sent). */
  function sendForm(editing, body, choice) {
    var sent = choice.held ? Object.assign({}, body, { applyToSent: choice.apply }) : body;
    var call = editing ? api('PUT', '/templates/' + encodeURIComponent(editing.id), sent) : api('POST', '/templates', body);
    return call.then(function (template) {
      if (editing) {
        var job = template.job;
        delete template.job;
        replaceTemplate(template);
        chooseTemplate(template, true);
        setStatus('Saved your changes to "' + displayName(template) + '". Contacts who reach this step from now on get the new version.' +
          (!choice.held ? '' : choice.apply ? ' The ' + eventsWord(choice.held) + ' already sent ' + (choice.held === 1 ? 'is' : 'are') +
            ' being updated: the progress is below.' : ' The ' + eventsWord(choice.held) + ' already sent keep the version they got.'));
        if (job) { followJob(job); }
      } else {
        state.templates = [template].concat(state.templates.filter(function (t) { return t.id !== template.id; }));
        state.total += 1;
        chooseTemplate(template);
        setStatus('Created "' + displayName(template) + '".');
      }
      resetForm();
      setMode('choose');
      return template;
    }).catch(function (error) {
      var fields = (error.data && error.data.fields) || {};
      var named = Object.keys(fields);
      var count = 0;
      named.forEach(function (name) {
        var messages = Array.isArray(fields[name]) ? fields[name] : [JSON.stringify(fields[name])];
        count += messages.length;
        formError(name, messages.join(' '));
      });
      if (error.status === 404 && editing) {
        formError('form', '"' + displayName(editing) + '" was deleted meanwhile: create it again instead.');
      } else if (!named.length) { formError('form', error.message); }
      if (named.length) { showFormErrors(count); } else { $('err-form').focus(); }
      return null;
    });
  }

  /* The form's button: a new event goes on to its mapping; an edit stays on the list. */
  function onSubmit(event) {
    event.preventDefault();
    var editing = state.mode === 'edit';
    submitForm().then(function (template) { if (template && !editing) { goTo(2); } });
  }

  // ------------------------------------------------------------------ step 2: map
  function kindLabel(kind, placeholder) {
    if (kind === 'field') { return 'Entry-source field'; }
    if (kind === 'attribute') { return 'Contact attribute'; }
    if (kind === 'fixed') { return 'Fixed value'; }
    if (kind === 'raw') { return 'Saved binding'; }
    return placeholder.default === null || placeholder.default === undefined ?
      'Leave empty (no default)' : 'Template default';
  }

  function renderMappings() {
    var body = $('mapping-rows');
    clear(body);
    var placeholders = state.template ? state.template.placeholders : [];
    show($('no-placeholders'), Boolean(state.template) && placeholders.length === 0);
    placeholders.forEach(function (placeholder, index) { body.appendChild(mappingRow(placeholder, index)); });
  }

  function mappingRow(placeholder, index) {
    var name = placeholder.name;
    var mapping = state.mappings[name] || { kind: 'default' };
    var kinds = ['field', 'attribute', 'fixed', 'default'];
    if (mapping.kind === 'raw') { kinds.push('raw'); }
    var errorId = 'map-err-' + index;
    var kind = el('select', { className: 'kind', 'aria-label': 'Value for {{' + name + '}} from', 'aria-describedby': errorId },
      kinds.map(function (k) { return el('option', { value: k, text: kindLabel(k, placeholder) }); }));
    kind.value = mapping.kind;
    var savedRaw = mapping.kind === 'raw' ? mapping : null;
    var valueCell = el('td', {}, []);
    var head = el('th', { scope: 'row' }, [el('code', { text: '{{' + name + '}}' })]);
    if (placeholder.default !== null && placeholder.default !== undefined) {
      head.appendChild(el('span', { className: 'hint block', text: 'default: "' + placeholder.default + '"' }));
    }
    var row = el('tr', { 'data-placeholder': name, 'data-index': String(index) }, [head, el('td', {}, [kind]), valueCell]);
    kind.addEventListener('change', function () {
      var next = { kind: kind.value };
      if (kind.value === 'raw') { next = savedRaw; }
      if (kind.value === 'field') {
        var same = state.fields.filter(function (f) { return f.name === name || loose(f.name) === loose(name); })[0];
        next.field = same ? same.name : (suggestField(name) || (state.fields[0] ? state.fields[0].name : ''));
      }
      if (kind.value === 'attribute') { next.set = ''; next.attr = ''; }
      if (kind.value === 'fixed') { next.value = ''; }
      state.mappings[name] = next;
      markDirty();
      fillValueCell(valueCell, placeholder, index);
      recheck();
    });
    fillValueCell(valueCell, placeholder, index);
    return row;
  }

  function edited(name, patch) {
    var mapping = state.mappings[name];
    Object.keys(patch).forEach(function (key) { mapping[key] = patch[key]; });
    delete mapping.original;
    delete mapping.auto;
    if (patch.field !== undefined) { delete mapping.eventKey; }
    markDirty();
    recheck();
  }

  /* "Did you mean FirstName?" for a placeholder no entry-source field is named like. */
  function suggestion(placeholder, index) {
    var name = placeholder.name;
    var mapping = state.mappings[name] || {};
    if (mapping.kind !== 'default' || !state.fields.length) { return null; }
    if (state.fields.some(function (f) { return loose(f.name) === loose(name); })) { return null; }
    var near = suggestField(name);
    if (!near) { return null; }
    var use = el('button', { type: 'button', className: 'btn btn-neutral btn-small use-suggestion', text: 'Use ' + near });
    use.addEventListener('click', function () {
      state.mappings[name] = { kind: 'field', field: near };
      markDirty();
      renderMappings();
      recheck();
      var select = document.querySelector('#mapping-rows tr[data-index="' + index + '"] select.field');
      if (select) { select.focus(); }
    });
    return el('p', { className: 'suggestion' }, [
      el('span', { text: 'No entry-source field is named ' + name + '. Did you mean ' + near + '? ' }), use]);
  }

  function fillValueCell(cell, placeholder, index) {
    var name = placeholder.name;
    var mapping = state.mappings[name];
    var errorId = 'map-err-' + index;
    clear(cell);
    if (mapping.kind === 'field') {
      var names = state.fields.map(function (f) { return f.name; });
      var select = el('select', { className: 'field', 'aria-label': 'Entry-source field for {{' + name + '}}', 'aria-describedby': errorId },
        [el('option', { value: '', text: names.length ? 'Choose a field…' : 'No fields known' })]);
      names.forEach(function (n) { select.appendChild(el('option', { value: n, text: n })); });
      if (mapping.field && names.indexOf(mapping.field) === -1) {
        select.appendChild(el('option', { value: mapping.field, text: mapping.field + ' (saved)' }));
      }
      select.value = mapping.field || '';
      select.addEventListener('change', function () { edited(name, { field: select.value }); });
      cell.appendChild(select);
    } else if (mapping.kind === 'attribute') {
      var set = el('input', { type: 'text', className: 'attr-set', value: mapping.set || '', placeholder: 'Attribute set',
        'aria-label': 'Attribute set for {{' + name + '}}', 'aria-describedby': errorId });
      var attr = el('input', { type: 'text', className: 'attr-field', value: mapping.attr || '', placeholder: 'Field',
        'aria-label': 'Attribute field for {{' + name + '}}', 'aria-describedby': errorId });
      set.addEventListener('input', function () { edited(name, { set: set.value }); });
      attr.addEventListener('input', function () { edited(name, { attr: attr.value }); });
      cell.appendChild(el('div', { className: 'pair' }, [set, attr]));
    } else if (mapping.kind === 'fixed') {
      var fixed = el('input', { type: 'text', className: 'fixed', value: mapping.value || '',
        'aria-label': 'Fixed value for {{' + name + '}}', 'aria-describedby': errorId });
      fixed.addEventListener('input', function () { edited(name, { value: fixed.value }); });
      cell.appendChild(fixed);
    } else if (mapping.kind === 'raw') {
      cell.appendChild(el('code', { className: 'raw', text: mapping.original }));
    } else {
      var text = placeholder.default === null || placeholder.default === undefined ?
        (state.template.missingFieldPolicy === 'strict' ? 'No default: the event is strict, so choose a value.' :
          'Left blank.') : '"' + placeholder.default + '"';
      cell.appendChild(el('span', { className: 'hint', text: text }));
      var hint = suggestion(placeholder, index);
      if (hint) { cell.appendChild(hint); }
    }
    cell.appendChild(el('p', { className: 'error', id: errorId }));
  }

  // ------------------------------------------------------------------ validation and save
  /* Everything that keeps the activity from being saved, up to step `upTo`, in step order:
     [{text, step, target}] where target finds the control to fix (a function, run when shown). */
  function problems(upTo) {
    var list = [];
    if (!state.template) {
      list.push({ text: 'Choose an existing event or create a new one (step 1).', step: 1,
        target: function () { return state.templates.length ? $('template-search') : $('mode-create'); } });
      return list;
    }
    if ((upTo || 3) < 2) { return list; }
    var strict = state.template.missingFieldPolicy === 'strict';
    state.template.placeholders.forEach(function (placeholder, index) {
      var name = placeholder.name;
      var mapping = state.mappings[name] || { kind: 'default' };
      var text = null;
      var control = 'select.kind';
      if (mapping.original !== undefined) { return; }
      if (mapping.kind === 'field') {
        control = 'select.field';
        if (!mapping.field) { text = '{{' + name + '}}: choose an entry-source field.'; }
        else if (!(mapping.eventKey || state.eventKey)) {
          text = '{{' + name + '}}: the journey\'s entry source is unknown; use another kind of value.';
          control = 'select.kind';
        }
      } else if (mapping.kind === 'attribute') {
        control = (mapping.set || '').trim() ? 'input.attr-field' : 'input.attr-set';
        if (!(mapping.set || '').trim() || !(mapping.attr || '').trim()) { text = '{{' + name + '}}: give the attribute set and the field.'; }
        else if ((mapping.set + mapping.attr).indexOf('"') !== -1) { text = '{{' + name + '}}: attribute names cannot contain a double quote.'; }
      } else if (mapping.kind === 'fixed') {
        control = 'input.fixed';
        if (!(mapping.value || '').trim()) { text = '{{' + name + '}}: type the fixed value.'; }
        else if (mapping.value.indexOf('{{') !== -1) { text = '{{' + name + '}}: a fixed value cannot contain "{{".'; }
      } else if (mapping.kind === 'default' && strict && (placeholder.default === null || placeholder.default === undefined)) {
        var near = state.fields.length ? suggestField(name) : null;
        text = '{{' + name + '}} needs a value: the event is strict and this placeholder has no default.' +
          (near ? ' Did you mean the entry-source field ' + near + '?' : '');
      }
      if (text) {
        list.push({ text: text, step: 2, placeholder: index, target: function () {
          return document.querySelector('#mapping-rows tr[data-index="' + index + '"] ' + control);
        } });
      }
    });
    if (!/^\d+$/.test(state.releaseAfter)) {
      list.push({ text: 'Release after: whole seconds, 0 or more.', step: 2, target: function () { return $('release-after'); } });
    }
    if (!state.activity) { list.push({ text: 'Journey Builder has not sent this activity yet.', step: 0 }); }
    return list;
  }

  /* The list above the step, each problem tied to its control (aria-invalid, aria-describedby)
     and a link that moves focus there. */
  function showProblems(list) {
    var node = $('problem-list');
    clear(node);
    Array.prototype.forEach.call(document.querySelectorAll('#step-2 [aria-invalid]'), function (n) { n.removeAttribute('aria-invalid'); });
    Array.prototype.forEach.call(document.querySelectorAll('#mapping-rows .error'), function (n) { n.textContent = ''; });
    $('err-release-after').textContent = /^\d+$/.test($('release-after').value.trim()) ? '' : 'Whole seconds, 0 or more.';
    list.forEach(function (problem) {
      var item = el('li', {});
      var target = problem.target && problem.step === state.step ? problem.target() : null;
      if (target) {
        target.setAttribute('aria-invalid', 'true');
        var link = el('a', { href: '#', text: problem.text });
        link.addEventListener('click', function (event) { event.preventDefault(); target.focus(); });
        item.appendChild(link);
      } else {
        item.appendChild(document.createTextNode(problem.text));
      }
      if (problem.placeholder !== undefined && problem.step === state.step) {
        var error = $('map-err-' + problem.placeholder);
        if (error) {
          var own = problem.text.replace(/^\{\{[^}]*\}\}:?\s*/, '');
          error.textContent = own.charAt(0).toUpperCase() + own.slice(1);
        }
      }
      node.appendChild(item);
    });
    state.showing = list.length > 0;
    show($('problems'), list.length > 0);
  }

  function hideProblems() {
    state.showing = false;
    show($('problems'), false);
    Array.prototype.forEach.call(document.querySelectorAll('#step-2 [aria-invalid]'), function (n) { n.removeAttribute('aria-invalid'); });
    Array.prototype.forEach.call(document.querySelectorAll('#mapping-rows .error'), function (n) { n.textContent = ''; });
  }

  /* While problems are shown, the list follows the fixes (a fixed one leaves at once). */
  function recheck() {
    if (!state.showing) { return; }
    if (state.step === 2) { readStep2(); }
    var list = problems(state.step === 1 ? 1 : 3).filter(function (p) { return p.step <= Math.max(state.step, 1) || p.step === 0; });
    if (list.length) { showProblems(list); } else { hideProblems(); }
  }

  /* Show the problems on the step of the first one and focus the control to fix. */
  function stopAt(list) {
    var first = list[0];
    if (first.step && first.step !== state.step) { goTo(first.step, true); }
    showProblems(list.filter(function (p) { return p.step === state.step || p.step === 0; }).concat(
      list.filter(function (p) { return p.step && p.step !== state.step; })));
    var target = first.target ? first.target() : null;
    (target || $('problems')).focus();
  }

  function inArguments() {
    var args = [
      { contactKey: '{{Contact.Key}}' },
      { templateId: state.template.id },
      { subscriptionId: state.subscription },
      { releaseEventDefinitionKey: state.releaseKey.trim() },
      { releaseOn: state.releaseOn },
      { releaseAfterSeconds: String(state.releaseAfter) }
    ];
    if (state.cancelOnStop) { args.push({ cancelOnStop: true }); }  // off: absent, as before the option
    state.template.placeholders.forEach(function (placeholder) {
      var binding = bindingOf(state.mappings[placeholder.name] || { kind: 'default' });
      if (binding !== null) {
        var item = {};
        item[placeholder.name] = binding;
        args.push(item);
      }
    });
    return args;
  }

  function savedActivity() {
    var activity = JSON.parse(JSON.stringify(state.activity));
    activity.name = activityName(state.template);
    activity.metaData = (activity.metaData && typeof activity.metaData === 'object') ? activity.metaData : {};
    activity.metaData.isConfigured = true;
    activity.arguments = (activity.arguments && typeof activity.arguments === 'object') ? activity.arguments : {};
    activity.arguments.execute = activity.arguments.execute || {};
    activity.arguments.execute.inArguments = inArguments();
    return activity;
  }

  /* Done (the page's or Journey Builder's): a filled form is created first; anything missing
     is listed on its step, focus on the first control to fix; nothing is sent until all is. */
  function save() {
    if (state.step === 1 && formTouched()) {
      return submitForm().then(function (template) { return template ? save() : false; });
    }
    if (state.step === 2) { readStep2(); }
    var list = problems(3);
    if (list.length) {
      stopAt(list);
      return Promise.resolve(false);
    }
    hideProblems();
    state.session.trigger('updateActivity', savedActivity());
    state.dirty = false;
    setStatus('Saved.');
    return Promise.resolve(true);
  }

  // ------------------------------------------------------------------ step 2 inputs
  function readStep2() {
    state.subscription = $('subscription-binding').value;
    state.releaseKey = $('release-key').value;
    state.releaseOn = $('release-confirmed').checked ? 'confirmed' : 'accepted';
    state.releaseAfter = $('release-after').value.trim();
    state.cancelOnStop = $('cancel-on-stop').checked;
  }

  /* A subscription binding in words (the raw text stays editable and in Review's details). */
  function subscriptionWords(binding) {
    var text = String(binding || '').trim();
    if (!text) { return 'Looked up from Rokt\'s webhooks: the contact\'s live subscriptions.'; }
    var parsed = parseBinding(text);
    if (parsed.kind === 'attribute') {
      return 'The contact attribute "' + parsed.attr + '" in the attribute set "' + parsed.set + '".';
    }
    if (parsed.kind === 'field') { return 'The entry-source field "' + parsed.field + '".'; }
    if (parsed.kind === 'fixed') { return 'Always the subscription id "' + text + '".'; }
    return 'A custom binding: ' + text;
  }

  function renderSubscriptionWords() {
    $('subscription-words').textContent = 'Taken from: ' + subscriptionWords($('subscription-binding').value);
  }

  function renderStep2Settings() {
    $('subscription-binding').value = state.subscription;
    renderSubscriptionWords();
    $('release-key').value = state.releaseKey;
    $('release-accepted').checked = state.releaseOn === 'accepted';
    $('release-confirmed').checked = state.releaseOn === 'confirmed';
    $('release-after').value = state.releaseAfter;
    $('cancel-on-stop').checked = state.cancelOnStop;
    releaseHint();
  }

  function releaseHint() {
    var seconds = Number($('release-after').value);
    var text = '';
    if (/^\d+$/.test($('release-after').value.trim())) {
      text = seconds >= 3600 && seconds % 3600 === 0 ? '= ' + seconds / 3600 + ' h' :
        seconds >= 60 && seconds % 60 === 0 ? '= ' + seconds / 60 + ' min' : '';
    }
    $('release-after-hint').textContent = ($('release-confirmed').checked ?
      'Contacts not confirmed by then are released with the outcome so far. ' :
      'Used only when releasing on confirmation. ') + text;
    $('err-release-after').textContent = /^\d+$/.test($('release-after').value.trim()) ? '' : 'Whole seconds, 0 or more.';
  }

  // ------------------------------------------------------------------ step 3: review
  var SAMPLE_GUESSES = [
    [/first.?name/i, 'Ava'], [/last.?name|surname/i, 'Nguyen'], [/city|town/i, 'Sydney'],
    [/brand/i, 'Rokt'], [/e.?mail/i, 'ava@example.com'], [/country/i, 'Australia']
  ];

  function sampleFor(name, mapping) {
    if (mapping.kind === 'fixed') { return mapping.value; }
    var source = mapping.kind === 'field' ? mapping.field : (mapping.kind === 'attribute' ? mapping.attr : name);
    var guess = SAMPLE_GUESSES.filter(function (pair) { return pair[0].test(source || name); })[0];
    return guess ? guess[1] : (source || name);
  }

  function renderSamples() {
    var box = $('sample-values');
    clear(box);
    var any = false;
    state.template.placeholders.forEach(function (placeholder, index) {
      var name = placeholder.name;
      var mapping = state.mappings[name] || { kind: 'default' };
      if (mapping.kind === 'default') { delete state.samples[name]; return; }
      any = true;
      if (mapping.kind === 'fixed') { state.samples[name] = mapping.value; }
      else if (state.samples[name] === undefined) { state.samples[name] = sampleFor(name, mapping); }
      var id = 'sample-' + index;
      var input = el('input', { id: id, type: 'text', className: 'sample', value: state.samples[name],
        'data-placeholder': name, disabled: mapping.kind === 'fixed' });
      input.addEventListener('input', function () { state.samples[name] = input.value; schedulePreview(); });
      box.appendChild(el('div', { className: 'field' }, [el('label', { for: id, text: name }), input]));
    });
    if (!any) { box.appendChild(el('p', { className: 'hint', text: 'Every placeholder uses the event\'s default.' })); }
  }

  var previewTimer = null;
  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(preview, 350);
  }

  function sampleValues() {
    var values = {};
    Object.keys(state.samples).forEach(function (name) { values[name] = state.samples[name]; });
    return values;
  }

  function preview() {
    var seq = ++state.previewSeq;
    $('preview-outcome').textContent = 'Rendering…';
    return api('POST', '/preview', { templateId: state.template.id, values: sampleValues() }).then(function (data) {
      if (seq !== state.previewSeq) { return; }
      renderPreview(data);
    }).catch(function (error) {
      if (seq === state.previewSeq) { $('preview-outcome').textContent = 'Preview unavailable: ' + error.message; }
    });
  }

  function renderPreview(data) {
    var lock = data.lockScreen || {};
    ['ios', 'android'].forEach(function (os) {
      var strings = lock[os] || {};
      $(os + '-title').textContent = strings.title || '';
      $(os + '-location').textContent = strings.location || '';
    });
    var outcome = $('preview-outcome');
    outcome.className = 'notice' + (data.outcome === 'ok' ? ' notice-ok' : ' notice-warn');
    outcome.textContent = data.outcome === 'ok' ? 'These sample values produce an event.' :
      'With these values: ' + data.outcome + (data.reason ? ' (' + data.reason + ')' : '');
    outcome.setAttribute('data-outcome', data.outcome || '');
    var details = $('preview-event');
    clear(details);
    var event = data.event || {};
    [['Title', event.title], ['Start', event.start], ['End', event.end],
      ['Time zone', event.timezoneIanaId || event.timezone], ['Location', event.location],
      ['Description', event.description],
      ['Reminder', event.notifyBefore === undefined ? undefined : event.notifyBefore + ' min before']]
      .forEach(function (pair) {
        if (pair[1] === undefined || pair[1] === null || pair[1] === '') { return; }
        details.appendChild(el('dt', { text: pair[0] }));
        details.appendChild(el('dd', { 'data-field': pair[0].toLowerCase(), text: String(pair[1]) }));
      });
    var advice = $('advice');
    clear(advice);
    (data.advice || []).forEach(function (item) {
      advice.appendChild(el('li', { 'data-code': item.code, text: item.message }));
    });
    if (!(data.advice || []).length) { advice.appendChild(el('li', { className: 'good', text: 'No advice: looks good.' })); }
  }

  /* Where a placeholder's value comes from, in words: "entry field FirstName", "default "Rokt"". */
  function sourceWords(placeholder) {
    var mapping = state.mappings[placeholder.name] || { kind: 'default' };
    if (mapping.kind === 'field') { return 'entry field ' + mapping.field; }
    if (mapping.kind === 'attribute') { return 'contact attribute ' + mapping.attr + ' (attribute set ' + mapping.set + ')'; }
    if (mapping.kind === 'fixed') { return 'the fixed text "' + mapping.value + '"'; }
    if (mapping.kind === 'raw') { return 'the saved binding ' + mapping.original; }
    if (placeholder.default !== null && placeholder.default !== undefined) { return 'default "' + placeholder.default + '"'; }
    return state.template.missingFieldPolicy === 'strict' ? 'nothing: the event is not sent' : 'nothing: left blank';
  }

  function renderSummary() {
    var node = $('summary');
    clear(node);
    [['Event', displayName(state.template)],
      ['Title', state.template.title],
      ['Subscription', subscriptionWords(state.subscription)],
      ['Release event', state.releaseKey.trim() || '(none)'],
      ['Release when', state.releaseOn === 'confirmed' ?
        'the contact confirms, or after ' + state.releaseAfter + ' s' : 'Rokt accepts the event'],
      ['When the journey is stopped', state.cancelOnStop ? 'cancel the events that have not started yet' :
        'the events stay in calendars']]
      .forEach(function (pair) {
        node.appendChild(el('dt', { text: pair[0] }));
        node.appendChild(el('dd', { text: pair[1] }));
      });
    var words = $('mapping-words');
    clear(words);
    state.template.placeholders.forEach(function (placeholder) {
      words.appendChild(el('li', { 'data-placeholder': placeholder.name },
        [el('code', { text: '{{' + placeholder.name + '}}' }), ' \u2190 ' + sourceWords(placeholder)]));
    });
    if (!state.template.placeholders.length) { words.appendChild(el('li', { text: 'No placeholders: every contact gets the same event.' })); }
    var raw = $('raw-bindings');
    clear(raw);
    inArguments().forEach(function (item) {
      var key = Object.keys(item)[0];
      raw.appendChild(el('li', {}, [el('code', { text: key + ': ' + item[key] })]));
    });
  }

  // ------------------------------------------------------------------ steps
  /* Show `step`. Moving forward (not forced) checks the steps before it first: with problems it
     stays, lists them and focuses the first control to fix; returns whether it moved. */
  function goTo(step, force) {
    if (step > state.step && !force) {
      if (state.step === 2) { readStep2(); }
      var list = problems(step === 2 ? 1 : 3).filter(function (p) { return p.step !== 0; });
      if (list.length) { stopAt(list); return false; }
    }
    if (state.step === 2) { readStep2(); }
    hideProblems();
    state.step = step;
    [1, 2, 3].forEach(function (n) {
      show($('step-' + n), n === step);
      var tab = $('step-tab-' + n);
      if (n === step) { tab.setAttribute('aria-current', 'step'); } else { tab.removeAttribute('aria-current'); }
      tab.className = n < step ? 'done' : '';
    });
    if (step === 2) { renderMappings(); renderStep2Settings(); }
    if (step === 3) { renderSamples(); renderSummary(); preview(); }
    $('btn-back').disabled = step === 1;
    show($('btn-next'), step < 3);
    var heading = $('step-' + step + '-title');
    heading.setAttribute('tabindex', '-1');
    heading.focus();
    return true;
  }

  /* Next (the page's or Journey Builder's). On step 1 with the form open, the event is created
     (or the edit saved) first, or the form says exactly what is missing. Resolves whether it moved. */
  function next() {
    if (state.step === 1 && state.mode !== 'choose' && (formTouched() || !state.template)) {
      return submitForm().then(function (template) { return template ? goTo(2) : false; });
    }
    return Promise.resolve(state.step < 3 ? goTo(state.step + 1) : false);
  }

  // The server's placeholder rule (render.PLACEHOLDER), to clear a field's error once fixed.
  var PLACEHOLDER = /\{\{\s*[\p{L}_][\p{L}\p{N}_.\-]*(?: [\p{L}\p{N}_.\-]+)*\s*(?:\|\s*default\s*:\s*"(?:[^"\\]|\\.)*"\s*)?\}\}/gu;

  function placeholdersOk(text) {
    return (text.match(/\{\{/g) || []).length === (text.match(PLACEHOLDER) || []).length;
  }

  /* A field marked invalid loses its error as soon as what it says is fixed. */
  function recheckField(field) {
    var input = formInput(field);
    if (!input || input.getAttribute('aria-invalid') !== 'true') { return; }
    var local = formProblems().filter(function (pair) { return pair[0] === field; });
    if (local.length) { $('err-' + field).textContent = local[0][1]; return; }
    if (['title', 'description', 'location'].indexOf(field) !== -1 && !placeholdersOk(input.value)) { return; }
    clearFieldError(field);
  }

  // ------------------------------------------------------------------ start
  function wire() {
    $('mode-choose').addEventListener('click', function () { setMode('choose'); });
    $('mode-create').addEventListener('click', function () { setMode('create'); });
    var searchTimer = null;
    $('template-search').addEventListener('input', function () {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(function () { state.query = $('template-search').value.trim(); loadTemplates(false); }, 250);
    });
    $('template-more').addEventListener('click', function () { loadTemplates(true); });
    $('create-panel').addEventListener('submit', onSubmit);
    FORM_FIELDS.concat(['timezone']).forEach(function (field) {
      formInput(field).addEventListener('input', function () { recheckField(field); });
    });
    $('tpl-timezone').addEventListener('input', function () { timeZoneHint(false); });
    $('tpl-timezone').addEventListener('change', function () { timeZoneHint(true); recheckField('timezone'); });
    $('timezone-mine').addEventListener('click', function () {
      $('tpl-timezone').value = $('timezone-mine').getAttribute('data-zone');
      timeZoneHint(true);
      recheckField('timezone');
    });
    $('form-cancel').addEventListener('click', function () { resetForm(); setMode('choose'); });
    $('event-edit').addEventListener('click', function () { setMode('edit', state.template); });
    $('event-duplicate').addEventListener('click', function () { setMode('create', state.template); });
    $('event-delete').addEventListener('click', askDelete);
    $('delete-yes').addEventListener('click', deleteChosen);
    $('delete-no').addEventListener('click', function () {
      show($('delete-confirm'), false);
      $('delete-yes').hidden = false;
      $('delete-no').textContent = 'Keep it';
      $('event-delete').focus();
    });
    ['subscription-binding', 'release-key', 'release-after'].forEach(function (id) {
      $(id).addEventListener('input', function () { markDirty(); releaseHint(); renderSubscriptionWords(); recheck(); });
    });
    ['release-accepted', 'release-confirmed'].forEach(function (id) {
      $(id).addEventListener('change', function () { markDirty(); releaseHint(); });
    });
    $('cancel-on-stop').addEventListener('change', markDirty);
    $('event-cancel').addEventListener('click', askCancel);
    $('cancel-yes').addEventListener('click', cancelChosen);
    $('cancel-no').addEventListener('click', closeCancel);
    $('event-restore').addEventListener('click', restoreChosen);
    $('apply-yes').addEventListener('click', function () { answerApply(true); });
    $('apply-no').addEventListener('click', function () { answerApply(false); });
    $('apply-back').addEventListener('click', function () { answerApply(null); });
    // Escape in a confirmation is its safe answer
    $('apply-confirm').addEventListener('keydown', function (event) {
      if (event.key === 'Escape') { event.preventDefault(); answerApply(null); }
    });
    $('cancel-confirm').addEventListener('keydown', function (event) {
      if (event.key === 'Escape') { event.preventDefault(); closeCancel(); }
    });
    $('preview-refresh').addEventListener('click', preview);
    $('btn-back').addEventListener('click', function () { if (state.step > 1) { goTo(state.step - 1); } });
    $('btn-next').addEventListener('click', next);
    $('btn-done').addEventListener('click', save);
    $('btn-cancel').addEventListener('click', function () {
      state.session.trigger('setActivityDirtyState', false);
      state.session.trigger('requestInspectorClose');
    });
  }

  function onInitActivity(activity) {
    if (state.activity) { return; }  // JB answers only the first `ready`; stay idempotent
    state.activity = (activity && typeof activity === 'object') ? activity : {};
    restore(state.activity);
    renderStep2Settings();
    state.session.trigger('requestEndpoints');
    ask('requestTokens', 'requestedTokens', TOKEN_TIMEOUT_MS).then(function (tokens) {
      state.fuel2token = (tokens && tokens.fuel2token) || '';
      return openSession(false);
    }).then(function () {
      var restoring = state.restored ?
        api('GET', '/templates/' + encodeURIComponent(state.restored.templateId)).then(function (template) {
          chooseTemplate(template, true);
          setStatus('');
        }).catch(function (error) {
          setStatus('The saved event ' + state.restored.templateId + ' could not be loaded (' + error.message +
            '): choose an event again.');
        }) : Promise.resolve();
      return Promise.all([loadSchema(), loadTemplates(false), loadTimeZones(), restoring]);
    }).then(function () {
      $('app').setAttribute('aria-busy', 'false');
      if (!state.restored) { setStatus(''); }
    }).catch(function (error) { fatal(error.message); });
  }

  function start() {
    wire();
    $('btn-back').disabled = true;
    setStatus('Connecting to Journey Builder…');
    window.JbOrigin.connect().then(function (ready) {
      state.settings = ready.settings;
      var session = ready.session;
      state.session = session;
      ['requestedTokens', 'requestedEndpoints'].forEach(function (reply) { onReply(reply); });
      onReply('requestedSchema', function (data) { useSchema(data); renderSchemaHint(); });
      onReply('requestedTriggerEventDefinition', useTrigger);
      onReply('requestedInteraction', useInteraction);
      session.on('initActivity', onInitActivity);
      session.on('clickedNext', function () {
        if (state.step < 3) {
          next().then(function (moved) { if (moved) { session.trigger('nextStep'); } });
        } else { save(); }
      });
      session.on('clickedBack', function () {
        if (state.step > 1) { goTo(state.step - 1); session.trigger('prevStep'); }
      });
      session.on('gotoStep', function (step) {
        var n = typeof step === 'number' ? step : STEP_KEYS[step && step.key];
        if (n && n !== state.step) { goTo(n); }
      });
      setStatus('Waiting for Journey Builder…');
      session.trigger('ready');
    }).catch(function (error) { fatal(error.refused ? error.message : 'The activity could not start: ' + error.message); });
  }

  if (document.readyState === 'loading') { document.addEventListener('DOMContentLoaded', start); } else { start(); }
}());
