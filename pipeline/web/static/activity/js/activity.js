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
    'releaseOn', 'releaseAfterSeconds'];
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
    samples: {},
    step: 1,
    dirty: false,
    previewSeq: 0
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
      var loose = state.fields.filter(function (f) { return f.name.toLowerCase() === name.toLowerCase(); })[0];
      var field = exact || loose;
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
        el('span', { className: 'template-title', text: template.title }),
        el('span', { className: 'template-meta', text: formatStart(template) + (template.name ? ' · ' + template.name : '') })
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
      node.appendChild(el('strong', { text: state.template.title }));
      node.appendChild(el('span', { text: ' · ' + formatStart(state.template) }));
    }
    show(node, Boolean(state.template));
  }

  function chooseTemplate(template, restoring) {
    if (!state.template || state.template.id !== template.id) {
      state.template = template;
      mappingsFor(template);
      if (!restoring) { markDirty(); }
    }
    renderTemplates();
    renderChosen();
    renderMappings();
    hideProblems();
    setStatus('');
  }

  function setMode(mode) {
    var create = mode === 'create';
    $('mode-choose').setAttribute('aria-selected', create ? 'false' : 'true');
    $('mode-create').setAttribute('aria-selected', create ? 'true' : 'false');
    show($('choose-panel'), !create);
    show($('create-panel'), create);
    (create ? $('tpl-title') : $('template-search')).focus();
  }

  // ------------------------------------------------------------------ step 1: create
  function timeZones() {
    var zones = [];
    try { zones = Intl.supportedValuesOf('timeZone'); } catch (e) { zones = []; }
    if (zones.indexOf('UTC') === -1) { zones = zones.concat(['UTC']); }
    return zones;
  }

  function fillTimeZones() {
    var list = $('timezones');
    timeZones().forEach(function (zone) { list.appendChild(el('option', { value: zone })); });
    try { $('tpl-timezone').value = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'; } catch (e) { $('tpl-timezone').value = 'UTC'; }
  }

  function withSeconds(value) { return /T\d{2}:\d{2}$/.test(value) ? value + ':00' : value; }

  function clearFormErrors() {
    Array.prototype.forEach.call(document.querySelectorAll('#create-panel .error'), function (node) { node.textContent = ''; });
    Array.prototype.forEach.call(document.querySelectorAll('#create-panel [aria-invalid]'), function (node) { node.removeAttribute('aria-invalid'); });
  }

  function formError(field, message) {
    var node = $('err-' + field) || $('err-form');
    node.textContent = (node.textContent ? node.textContent + ' ' : '') + message;
    var input = document.querySelector('#create-panel [name="' + field + '"]');
    if (input) { input.setAttribute('aria-invalid', 'true'); }
  }

  function createTemplate(event) {
    event.preventDefault();
    clearFormErrors();
    var notify = $('tpl-notify').value.trim();
    var body = {
      title: $('tpl-title').value,
      description: $('tpl-description').value,
      location: $('tpl-location').value,
      start: withSeconds($('tpl-start').value),
      end: withSeconds($('tpl-end').value),
      timezone: $('tpl-timezone').value.trim(),
      allDay: $('tpl-allday').checked,
      notifyBefore: notify === '' ? null : Number(notify),
      missingFieldPolicy: $('tpl-policy').value
    };
    var missing = false;
    [['title', 'Give the event a title.'], ['start', 'Give the event a start.'], ['timezone', 'Choose a time zone.']]
      .forEach(function (pair) { if (!String(body[pair[0]]).trim()) { formError(pair[0], pair[1]); missing = true; } });
    if (notify !== '' && !/^\d+$/.test(notify)) { formError('notifyBefore', 'Whole minutes, 0 or more.'); missing = true; }
    if (missing) { return; }
    $('create-submit').disabled = true;
    api('POST', '/templates', body).then(function (template) {
      state.templates = [template].concat(state.templates.filter(function (t) { return t.id !== template.id; }));
      state.total += 1;
      chooseTemplate(template);
      setMode('choose');
      goTo(2);
    }).catch(function (error) {
      var fields = (error.data && error.data.fields) || {};
      var named = Object.keys(fields);
      named.forEach(function (name) {
        var messages = fields[name];
        formError(name, Array.isArray(messages) ? messages.join(' ') : JSON.stringify(messages));
      });
      if (!named.length) { formError('form', error.message); }
    }).then(function () { $('create-submit').disabled = false; });
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
    placeholders.forEach(function (placeholder) { body.appendChild(mappingRow(placeholder)); });
  }

  function mappingRow(placeholder) {
    var name = placeholder.name;
    var mapping = state.mappings[name] || { kind: 'default' };
    var kinds = ['field', 'attribute', 'fixed', 'default'];
    if (mapping.kind === 'raw') { kinds.push('raw'); }
    var kind = el('select', { className: 'kind', 'aria-label': 'Value for ' + name + ' from' },
      kinds.map(function (k) { return el('option', { value: k, text: kindLabel(k, placeholder) }); }));
    kind.value = mapping.kind;
    var savedRaw = mapping.kind === 'raw' ? mapping : null;
    var valueCell = el('td', {}, []);
    var head = el('th', { scope: 'row' }, [el('code', { text: '{{' + name + '}}' })]);
    if (placeholder.default !== null && placeholder.default !== undefined) {
      head.appendChild(el('span', { className: 'hint block', text: 'default: "' + placeholder.default + '"' }));
    }
    var row = el('tr', { 'data-placeholder': name }, [head, el('td', {}, [kind]), valueCell]);
    kind.addEventListener('change', function () {
      var next = { kind: kind.value };
      if (kind.value === 'raw') { next = savedRaw; }
      if (kind.value === 'field') {
        var same = state.fields.filter(function (f) { return f.name === name; })[0];
        next.field = same ? same.name : (state.fields[0] ? state.fields[0].name : '');
      }
      if (kind.value === 'attribute') { next.set = ''; next.attr = ''; }
      if (kind.value === 'fixed') { next.value = ''; }
      state.mappings[name] = next;
      markDirty();
      fillValueCell(valueCell, placeholder);
    });
    fillValueCell(valueCell, placeholder);
    return row;
  }

  function edited(name, patch) {
    var mapping = state.mappings[name];
    Object.keys(patch).forEach(function (key) { mapping[key] = patch[key]; });
    delete mapping.original;
    delete mapping.auto;
    if (patch.field !== undefined) { delete mapping.eventKey; }
    markDirty();
  }

  function fillValueCell(cell, placeholder) {
    var name = placeholder.name;
    var mapping = state.mappings[name];
    clear(cell);
    if (mapping.kind === 'field') {
      var names = state.fields.map(function (f) { return f.name; });
      var select = el('select', { className: 'field', 'aria-label': 'Entry-source field for ' + name },
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
        'aria-label': 'Attribute set for ' + name });
      var attr = el('input', { type: 'text', className: 'attr-field', value: mapping.attr || '', placeholder: 'Field',
        'aria-label': 'Attribute field for ' + name });
      set.addEventListener('input', function () { edited(name, { set: set.value }); });
      attr.addEventListener('input', function () { edited(name, { attr: attr.value }); });
      cell.appendChild(el('div', { className: 'pair' }, [set, attr]));
    } else if (mapping.kind === 'fixed') {
      var fixed = el('input', { type: 'text', className: 'fixed', value: mapping.value || '',
        'aria-label': 'Fixed value for ' + name });
      fixed.addEventListener('input', function () { edited(name, { value: fixed.value }); });
      cell.appendChild(fixed);
    } else if (mapping.kind === 'raw') {
      cell.appendChild(el('code', { className: 'raw', text: mapping.original }));
    } else {
      var text = placeholder.default === null || placeholder.default === undefined ?
        (state.template.missingFieldPolicy === 'strict' ? 'No default: the event is strict, so choose a value.' :
          'Left blank.') : '"' + placeholder.default + '"';
      cell.appendChild(el('span', { className: 'hint', text: text }));
    }
  }

  // ------------------------------------------------------------------ validation and save
  function problems(upTo) {
    var list = [];
    if (!state.template) {
      list.push('Choose an existing event or create a new one (step 1).');
      return list;
    }
    if ((upTo || 3) < 2) { return list; }
    var strict = state.template.missingFieldPolicy === 'strict';
    state.template.placeholders.forEach(function (placeholder) {
      var name = placeholder.name;
      var mapping = state.mappings[name] || { kind: 'default' };
      if (mapping.original !== undefined) { return; }
      if (mapping.kind === 'field') {
        if (!mapping.field) { list.push('{{' + name + '}}: choose an entry-source field.'); }
        else if (!(mapping.eventKey || state.eventKey)) {
          list.push('{{' + name + '}}: the journey\'s entry source is unknown; use another kind of value.');
        }
      } else if (mapping.kind === 'attribute') {
        if (!(mapping.set || '').trim() || !(mapping.attr || '').trim()) {
          list.push('{{' + name + '}}: give the attribute set and the field.');
        } else if ((mapping.set + mapping.attr).indexOf('"') !== -1) {
          list.push('{{' + name + '}}: attribute names cannot contain a double quote.');
        }
      } else if (mapping.kind === 'fixed') {
        if (!(mapping.value || '').trim()) { list.push('{{' + name + '}}: type the fixed value.'); }
        else if (mapping.value.indexOf('{{') !== -1) { list.push('{{' + name + '}}: a fixed value cannot contain "{{".'); }
      } else if (mapping.kind === 'default' && strict && (placeholder.default === null || placeholder.default === undefined)) {
        list.push('{{' + name + '}} needs a value: the event is strict and this placeholder has no default.');
      }
    });
    if (!/^\d+$/.test(state.releaseAfter)) { list.push('Release after: whole seconds, 0 or more.'); }
    if (!state.activity) { list.push('Journey Builder has not sent this activity yet.'); }
    return list;
  }

  function showProblems(list) {
    var node = $('problem-list');
    clear(node);
    list.forEach(function (text) { node.appendChild(el('li', { text: text })); });
    show($('problems'), list.length > 0);
  }

  function hideProblems() { show($('problems'), false); }

  function inArguments() {
    var args = [
      { contactKey: '{{Contact.Key}}' },
      { templateId: state.template.id },
      { subscriptionId: state.subscription },
      { releaseEventDefinitionKey: state.releaseKey.trim() },
      { releaseOn: state.releaseOn },
      { releaseAfterSeconds: String(state.releaseAfter) }
    ];
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

  function save() {
    readStep2();
    var list = problems(3);
    if (list.length) {
      showProblems(list);
      if (!state.template) { goTo(1, true); }
      return false;
    }
    hideProblems();
    state.session.trigger('updateActivity', savedActivity());
    state.dirty = false;
    setStatus('Saved.');
    return true;
  }

  // ------------------------------------------------------------------ step 2 inputs
  function readStep2() {
    state.subscription = $('subscription-binding').value;
    state.releaseKey = $('release-key').value;
    state.releaseOn = $('release-confirmed').checked ? 'confirmed' : 'accepted';
    state.releaseAfter = $('release-after').value.trim();
  }

  function renderStep2Settings() {
    $('subscription-binding').value = state.subscription;
    $('release-key').value = state.releaseKey;
    $('release-accepted').checked = state.releaseOn === 'accepted';
    $('release-confirmed').checked = state.releaseOn === 'confirmed';
    $('release-after').value = state.releaseAfter;
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

  function renderSummary() {
    var node = $('summary');
    clear(node);
    [['Event', state.template.title],
      ['Subscription', state.subscription || '(looked up from Rokt\'s webhooks)'],
      ['Release event', state.releaseKey.trim() || '(none)'],
      ['Release when', state.releaseOn === 'confirmed' ?
        'the contact confirms, or after ' + state.releaseAfter + ' s' : 'Rokt accepts the event']]
      .forEach(function (pair) {
        node.appendChild(el('dt', { text: pair[0] }));
        node.appendChild(el('dd', { text: pair[1] }));
      });
  }

  // ------------------------------------------------------------------ steps
  function goTo(step, force) {
    if (step > state.step && !force) {
      if (state.step === 2) { readStep2(); }
      var list = problems(step === 2 ? 1 : 3).filter(function (text) { return text.indexOf('Journey Builder') !== 0; });
      if (list.length) { showProblems(list); return false; }
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
    $('create-panel').addEventListener('submit', createTemplate);
    ['subscription-binding', 'release-key', 'release-after'].forEach(function (id) {
      $(id).addEventListener('input', function () { markDirty(); releaseHint(); });
    });
    ['release-accepted', 'release-confirmed'].forEach(function (id) {
      $(id).addEventListener('change', function () { markDirty(); releaseHint(); });
    });
    $('preview-refresh').addEventListener('click', preview);
    $('btn-back').addEventListener('click', function () { if (state.step > 1) { goTo(state.step - 1); } });
    $('btn-next').addEventListener('click', function () { if (state.step < 3) { goTo(state.step + 1); } });
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
      return Promise.all([loadSchema(), loadTemplates(false), restoring]);
    }).then(function () {
      $('app').setAttribute('aria-busy', 'false');
      if (!state.restored) { setStatus(''); }
    }).catch(function (error) { fatal(error.message); });
  }

  function start() {
    wire();
    fillTimeZones();
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
        if (state.step < 3) { if (goTo(state.step + 1)) { session.trigger('nextStep'); } } else { save(); }
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
