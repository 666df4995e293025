// The Concierto dashboard's script: SLA countdowns, live refresh of the parts
// of a page an event concerns (server-sent events from /events), and the
// content library's upload and collection actions through /library/api.
'use strict';
(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || '';

  // SLA countdowns: every second, from the due time the page gives.
  function human(ms) {
    let s = Math.floor(Math.abs(ms) / 1000);
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + String(m).padStart(2, '0') + 'm';
    if (m) return m + 'm ' + String(s).padStart(2, '0') + 's';
    return s + 's';
  }
  function tick() {
    for (const el of document.querySelectorAll('.countdown[data-due]')) {
      const left = Date.parse(el.dataset.due) - Date.now();
      if (Number.isNaN(left)) continue;
      el.textContent = left >= 0 ? human(left) + ' left' : 'overdue by ' + human(left);
      el.classList.toggle('overdue', left < 0);
    }
  }
  tick();
  setInterval(tick, 1000);

  // Live parts: sections with data-live="kind ..." are reloaded from the
  // server when an event of such a kind arrives (at most every 700 ms).
  let pending = null;
  let kinds = new Set();
  async function refresh() {
    pending = null;
    const wanted = kinds; kinds = new Set();
    const parts = [...document.querySelectorAll('[data-live][id]')]
      .filter(el => el.dataset.live.split(' ').some(k => wanted.has(k) || wanted.has('*')));
    if (!parts.length) return;
    if (document.activeElement && parts.some(p => p.contains(document.activeElement) && document.activeElement.tagName === 'TEXTAREA')) {
      return; // do not wipe what the reviewer is typing
    }
    try {
      const resp = await fetch(location.href, { credentials: 'same-origin', headers: { accept: 'text/html' } });
      if (!resp.ok && resp.status !== 503) return;
      const doc = new DOMParser().parseFromString(await resp.text(), 'text/html');
      for (const el of parts) {
        const fresh = doc.getElementById(el.id);
        if (fresh) el.innerHTML = fresh.innerHTML;
      }
      tick();
      document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
    } catch (e) { /* the next event tries again */ }
  }
  // A run's own page (its section carries data-run) is about that run only;
  // lists (whose rows carry data-run too) are about every run.
  function concerns(kind, data) {
    if (kind !== 'run' && kind !== 'gate') return true;
    const runPart = document.querySelector('section[data-run]');
    return !runPart || !data.run_id || runPart.dataset.run === data.run_id;
  }
  // The runs list: a listed run's state cell follows its events at once, on
  // any page; the first page also reloads (the server applies the filters),
  // so new runs come in at the top.
  function updateRunRow(data) {
    if (!data.run_id || !data.run_state) return;
    const state = String(data.run_state).replace(/^RUN_STATE_/, '').toLowerCase().replace(/_/g, '-');
    if (state === 'unspecified') return;
    for (const row of document.querySelectorAll('#run-list tr[data-run]')) {
      if (row.dataset.run !== data.run_id) continue;
      const cell = row.querySelector('td.run-state');
      if (!cell || cell.dataset.state === state) continue;
      cell.dataset.state = state;
      const badge = document.createElement('span');
      badge.className = 'badge st-' + state;
      badge.textContent = state.replace(/-/g, ' ');
      cell.replaceChildren(badge);
    }
  }
  function schedule(kind, data) {
    if (!concerns(kind, data)) return;
    kinds.add(kind);
    if (!pending) pending = setTimeout(refresh, 700);
  }
  if (window.EventSource && document.querySelector('[data-live], [data-list]')) {
    const es = new EventSource('/events');
    es.addEventListener('hello', () => { document.body.dataset.live = 'open'; });
    es.onerror = () => { document.body.dataset.live = 'closed'; };
    for (const kind of ['run', 'gate', 'metric', 'heartbeat']) {
      es.addEventListener(kind, ev => {
        let data = {};
        try { data = JSON.parse(ev.data); } catch (e) { /* keep {} */ }
        if (kind === 'run') updateRunRow(data);
        schedule(kind, data);
      });
    }
    es.addEventListener('lagged', () => schedule('*', {}));
  }

  // The content library.
  const status = (id, text, bad) => {
    const el = document.getElementById(id);
    if (el) { el.textContent = text; el.classList.toggle('error', !!bad); }
  };
  async function api(method, path, body, json) {
    const headers = { 'x-csrf-token': csrf(), accept: 'application/json' };
    if (json) headers['content-type'] = 'application/json';
    const resp = await fetch('/library/api/' + path, {
      method, headers, credentials: 'same-origin', body: json ? JSON.stringify(body) : body,
    });
    let out = {};
    try { out = await resp.json(); } catch (e) { /* no body */ }
    if (!resp.ok && !(resp.status === 415 && out.items)) {
      throw new Error(out.error || ('the library answered ' + resp.status));
    }
    return out;
  }
  async function upload(files) {
    if (!files.length) return;
    const form = new FormData();
    for (const f of files) form.append('file', f, f.name);
    const col = new URLSearchParams(location.search).get('collection');
    if (col) form.append('collection', col);
    status('upload-status', 'Uploading ' + files.length + ' file(s)…');
    try {
      const out = await api('POST', 'upload', form, false);
      const stored = (out.items || []).length, refused = (out.refused || []).length;
      status('upload-status', 'Stored ' + stored + ', refused ' + refused +
        (refused ? ': ' + out.refused.map(r => r.name + ' (' + r.reason + ')').join(', ') : '') + '.', refused > 0);
      setTimeout(() => location.reload(), 600);
    } catch (e) { status('upload-status', 'Upload failed: ' + e.message, true); }
  }
  const zone = document.getElementById('dropzone');
  if (zone) {
    zone.addEventListener('dragover', e => { e.preventDefault(); zone.classList.add('over'); });
    zone.addEventListener('dragleave', () => zone.classList.remove('over'));
    zone.addEventListener('drop', e => {
      e.preventDefault(); zone.classList.remove('over');
      upload([...e.dataTransfer.files]);
    });
    const input = document.getElementById('upload-input');
    if (input) input.addEventListener('change', () => upload([...input.files]));
  }
  const create = document.getElementById('new-collection');
  if (create) {
    create.addEventListener('submit', async e => {
      e.preventDefault();
      const name = create.elements.name.value.trim();
      try {
        await api('POST', 'collections', { name, description: create.elements.description.value }, true);
        location.reload();
      } catch (err) { status('library-status', 'Could not create ' + name + ': ' + err.message, true); }
    });
  }
  document.addEventListener('change', async e => {
    const sel = e.target.closest('select.add-to');
    if (!sel || !sel.value) return;
    try {
      await api('POST', 'collections/' + encodeURIComponent(sel.value) + '/items', { id: sel.dataset.item }, true);
      location.reload();
    } catch (err) { status('library-status', 'Could not add: ' + err.message, true); }
  });
  document.addEventListener('click', async e => {
    const btn = e.target.closest('button.remove-from');
    if (!btn) return;
    try {
      await api('DELETE', 'collections/' + encodeURIComponent(btn.dataset.collection) + '/items/' +
        encodeURIComponent(btn.dataset.item), undefined, false);
      location.reload();
    } catch (err) { status('library-status', 'Could not remove: ' + err.message, true); }
  });

  // First-run sign-in link (`/login#token=...`, printed by `concierto up`):
  // the token is taken from the fragment (which browsers never send), the
  // fragment is cleared from the address and history, and the sign-in form
  // (with its CSRF field) is submitted, landing on the overview.
  const loginForm = document.querySelector('form[data-login-form]');
  if (loginForm && location.hash.length > 1) {
    const token = new URLSearchParams(location.hash.slice(1)).get('token');
    history.replaceState(null, '', location.pathname + location.search);
    const field = loginForm.querySelector('input[name="token"]');
    if (token && field) {
      field.value = token;
      document.body.dataset.signinLink = 'submitted';
      if (loginForm.requestSubmit) loginForm.requestSubmit(); else loginForm.submit();
    }
  }
})();
