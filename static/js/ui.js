// Shared UI pieces: notices, confirmation, form dialogs, paginated lists.
import { h, replace, nextId, debounce } from './dom.js';
import { api, ApiError } from './api.js';

// ---------- notices ----------
export function notify(message, kind = 'ok') {
  const region = document.getElementById('toasts');
  if (!region) return;
  const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss' }, '×');
  const t = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, h('span', null, message), close);
  const remove = () => t.remove();
  close.addEventListener('click', remove);
  region.append(t);
  while (region.children.length > 3) region.firstElementChild.remove();
  setTimeout(remove, kind === 'error' ? 8000 : 4000);
}
export const notifyError = (e) => notify(errText(e), 'error');
export const errText = (e) => (e instanceof ApiError ? e.detail : String((e && e.message) || e));

// ---------- modal dialogs ----------
function modal(title, body, { wide } = {}) {
  const titleId = nextId('dlg');
  const dlg = h('dialog', { class: ['modal', wide && 'modal-wide'], 'aria-labelledby': titleId },
    h('div', { class: 'modal-head' },
      h('h2', { id: titleId }, title),
      h('button', { type: 'button', class: 'btn-icon', 'aria-label': 'Close', onclick: () => dlg.close() }, '×')),
    body);
  dlg.addEventListener('close', () => dlg.remove());
  document.body.append(dlg);
  dlg.showModal();
  return dlg;
}

/** A dialog showing `body` (nodes) with a Close button. Resolves when it closes. */
export function showDialog(title, body, { wide } = {}) {
  return new Promise((resolve) => {
    const close = h('button', { type: 'submit', class: 'btn' }, 'Close');
    const form = h('form', { method: 'dialog', class: 'modal-body' }, body, h('div', { class: 'form-actions' }, close));
    const dlg = modal(title, form, { wide });
    dlg.addEventListener('close', () => resolve());
    close.focus();
  });
}

/** Ask before a destructive action. Resolves true when confirmed. */
export function confirmAction(message, { title = 'Are you sure?', confirmLabel = 'Confirm', danger = true } = {}) {
  return new Promise((resolve) => {
    let ok = false;
    const yes = h('button', { type: 'submit', class: ['btn', danger ? 'btn-danger' : 'btn-primary'] }, confirmLabel);
    const no = h('button', { type: 'button', class: 'btn' }, 'Cancel');
    const form = h('form', { method: 'dialog', class: 'modal-body' },
      h('p', null, message),
      h('div', { class: 'form-actions' }, no, yes));
    const dlg = modal(title, form);
    form.addEventListener('submit', () => { ok = true; });
    no.addEventListener('click', () => dlg.close());
    dlg.addEventListener('close', () => resolve(ok));
    no.focus();
  });
}

/**
 * A form in a dialog. fields: [{name, label, type, required, options, help, value, ...}]
 * onSubmit(values) may throw ApiError; its detail is shown next to the field it names, or atop.
 * Resolves with onSubmit's result, or undefined when cancelled.
 */
export function formDialog({ title, fields, submitLabel = 'Save', onSubmit, intro, wide }) {
  return new Promise((resolve) => {
    let result;
    const formError = h('div', { class: 'form-error', role: 'alert', hidden: true });
    const controls = {};
    const rows = fields.map((f) => {
      if (f.type === 'section') return h('h3', { class: 'form-section' }, f.label);
      const row = field(f);
      controls[f.name] = row;
      return row.el;
    });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, submitLabel);
    const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
    const form = h('form', { class: 'modal-body form', novalidate: true },
      intro ? h('p', { class: 'muted' }, intro) : null,
      formError, rows,
      h('div', { class: 'form-actions' }, cancel, submit));
    const dlg = modal(title, form, { wide });
    cancel.addEventListener('click', () => dlg.close());
    dlg.addEventListener('close', () => resolve(result));
    const first = form.querySelector('input:not([type=hidden]):not([disabled]), select, textarea');
    if (first) first.focus();

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors();
      const values = {};
      for (const [name, c] of Object.entries(controls)) values[name] = c.get();
      // client-side required check, same wording style as the API
      for (const f of fields) {
        if (f.type === 'section') continue;
        if (f.required && (values[f.name] === '' || values[f.name] === null || values[f.name] === undefined)) {
          showError(`${f.label} is required`, f.name);
          return;
        }
      }
      submit.disabled = true;
      const label = submit.textContent;
      submit.textContent = 'Saving…';
      form.setAttribute('aria-busy', 'true');
      try {
        result = await onSubmit(values);
        dlg.close();
      } catch (e) {
        showError(errText(e), matchField(errText(e)));
      } finally {
        submit.disabled = false;
        submit.textContent = label;
        form.removeAttribute('aria-busy');
      }
    });

    function matchField(detail) {
      const lower = detail.toLowerCase();
      const f = fields.find((f) => f.type !== 'section' && (lower.startsWith(f.name.toLowerCase() + ' ') || lower.startsWith(f.name.toLowerCase() + ':')
        || (f.label && lower.startsWith(f.label.toLowerCase() + ' '))));
      return f && f.name;
    }
    function clearErrors() {
      formError.hidden = true;
      replace(formError);
      for (const c of Object.values(controls)) c.setError(null);
    }
    function showError(msg, name) {
      if (name && controls[name]) {
        controls[name].setError(msg);
        controls[name].focus();
      } else {
        replace(formError, msg);
        formError.hidden = false;
      }
    }
  });
}

/** One labelled control with a help line and an error line. */
export function field(f) {
  const id = nextId(f.name);
  const errId = id + '-err';
  const helpId = id + '-help';
  const describedBy = [f.help ? helpId : null, errId].filter(Boolean).join(' ');
  let input;
  let get;
  const type = f.type || 'text';
  if (type === 'select') {
    input = h('select', { id, name: f.name, 'aria-describedby': describedBy, disabled: f.disabled },
      (f.options || []).map(([v, l]) => h('option', { value: v, selected: String(f.value ?? '') === String(v) }, l)));
    get = () => input.value;
  } else if (type === 'multiselect') {
    const chosen = (f.value || []).map(String);
    input = h('select', { id, name: f.name, multiple: true, size: f.size || Math.min(6, Math.max(3, (f.options || []).length)), 'aria-describedby': describedBy, disabled: f.disabled },
      (f.options || []).map(([v, l]) => h('option', { value: v, selected: chosen.includes(String(v)) }, l)));
    get = () => [...input.selectedOptions].map((o) => o.value);
  } else if (type === 'textarea') {
    input = h('textarea', { id, name: f.name, rows: f.rows || 4, maxlength: f.maxlength, placeholder: f.placeholder, 'aria-describedby': describedBy, value: f.value ?? '' });
    get = () => input.value;
  } else if (type === 'checkbox') {
    input = h('input', { id, name: f.name, type: 'checkbox', checked: !!f.value, disabled: f.disabled, 'aria-describedby': describedBy });
    get = () => input.checked;
  } else if (type === 'checkboxes') {
    const boxes = (f.options || []).map(([v, l, hint]) => {
      const cid = nextId('cb');
      const cb = h('input', { type: 'checkbox', id: cid, value: v, checked: (f.value || []).includes(v) });
      return { cb, el: h('label', { class: 'check', for: cid, title: hint || null }, cb, h('span', null, l)) };
    });
    input = h('fieldset', { class: 'checks', id, 'aria-describedby': describedBy }, h('legend', null, f.label), boxes.map((b) => b.el));
    get = () => boxes.filter((b) => b.cb.checked).map((b) => b.cb.value);
  } else {
    input = h('input', {
      id, name: f.name, type, value: f.value ?? '', required: !!f.required, autocomplete: f.autocomplete || (type === 'password' ? 'new-password' : 'off'),
      min: f.min, max: f.max, step: f.step, maxlength: f.maxlength, placeholder: f.placeholder, inputmode: f.inputmode, 'aria-describedby': describedBy,
    });
    get = () => input.value;
  }
  if (f.required && input.setAttribute) input.setAttribute('aria-required', 'true');
  const err = h('div', { class: 'field-error', id: errId, hidden: true });
  const help = f.help ? h('div', { class: 'help', id: helpId }, f.help) : null;
  let el;
  const cls = ['field', f.half && 'field-half'];
  if (type === 'checkbox') {
    el = h('div', { class: [...cls, 'field-check'] }, h('label', { class: 'check', for: id }, input, h('span', null, f.label)), help, err);
  } else if (type === 'checkboxes') {
    el = h('div', { class: cls }, input, help, err);
  } else {
    el = h('div', { class: cls }, h('label', { for: id }, f.label, f.required ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null), input, help, err);
  }
  return {
    el, input, get,
    focus: () => (input.focus ? input.focus() : null),
    setError(msg) {
      if (msg) { replace(err, msg); err.hidden = false; input.setAttribute('aria-invalid', 'true'); }
      else { replace(err); err.hidden = true; input.removeAttribute('aria-invalid'); }
    },
  };
}

// ---------- small pieces ----------
export function button(label, onclick, { kind, small, title, disabled, type = 'button', ...rest } = {}) {
  return h('button', { type, class: ['btn', kind && `btn-${kind}`, small && 'btn-sm'], title, disabled, onclick, ...rest }, label);
}

export const badge = (text, kind = '') => h('span', { class: ['badge', kind && `badge-${kind}`] }, text);

export function pageHeader(title, ...actions) {
  return h('div', { class: 'page-head' },
    h('h1', { tabindex: '-1' }, title),
    h('div', { class: 'page-actions' }, actions));
}

/** Runs an action with a button showing progress; shows the result as a notice. */
export async function act(btn, fn, okMessage) {
  const label = btn ? btn.textContent : '';
  if (btn) { btn.disabled = true; btn.textContent = '…'; btn.setAttribute('aria-busy', 'true'); }
  try {
    const r = await fn();
    if (okMessage) notify(okMessage);
    return r;
  } catch (e) {
    notifyError(e);
    return undefined;
  } finally {
    if (btn && btn.isConnected) { btn.disabled = false; btn.textContent = label; btn.removeAttribute('aria-busy'); }
  }
}

// ---------- paginated list ----------
/**
 * A searchable, filterable, paginated table over a list endpoint. Its state lives in the URL
 * query (search, skip, limit and each filter) so reload and back keep it.
 * opts: {path, label, columns: [{label, cell(row) → node|string, class}], filters: [{name, label,
 *   options: [[v, l]] | async () => [[v, l]], default}], searchLabel, empty, extraQuery}
 */
export function listView(opts) {
  const params = new URLSearchParams(location.search);
  const prefix = opts.prefix || '';
  const state = {
    search: params.get(prefix + 'search') || '',
    skip: Math.max(0, parseInt(params.get(prefix + 'skip'), 10) || 0),
    limit: [10, 20, 50, 100].includes(+params.get(prefix + 'limit')) ? +params.get(prefix + 'limit') : 20,
    filters: {},
  };
  const filters = opts.filters || [];
  for (const f of filters) state.filters[f.name] = params.get(prefix + f.name) ?? f.default ?? '';

  const searchId = nextId('search');
  const search = h('input', { type: 'search', id: searchId, value: state.search, placeholder: opts.searchPlaceholder || 'Search…', autocomplete: 'off' });
  search.addEventListener('input', debounce(() => { state.search = search.value.trim(); state.skip = 0; load(); }, 300));

  const filterEls = filters.map((f) => {
    const id = nextId('filter');
    const sel = h('select', { id });
    const fill = (options) => {
      replace(sel, options.map(([v, l]) => h('option', { value: v, selected: String(state.filters[f.name]) === String(v) }, l)));
    };
    if (typeof f.options === 'function') {
      fill([['', 'Loading…']]);
      f.options().then(fill, () => fill([['', 'All']]));
    } else fill(f.options);
    sel.addEventListener('change', () => { state.filters[f.name] = sel.value; state.skip = 0; load(); });
    return h('div', { class: 'filter' }, h('label', { for: id }, f.label), sel);
  });

  const thead = h('thead', null, h('tr', null, opts.columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label))));
  const tbody = h('tbody');
  const caption = h('caption', { class: 'sr-only' }, opts.label || '');
  const table = h('table', { class: 'table' }, caption, thead, tbody);
  const summary = h('span', { class: 'summary', 'aria-live': 'polite' });
  const prev = button('← Previous', () => { state.skip = Math.max(0, state.skip - state.limit); load(); }, { small: true });
  const next = button('Next →', () => { state.skip += state.limit; load(); }, { small: true });
  const sizeId = nextId('size');
  const size = h('select', { id: sizeId }, [10, 20, 50, 100].map((n) => h('option', { value: n, selected: n === state.limit }, String(n))));
  size.addEventListener('change', () => { state.limit = +size.value; state.skip = 0; load(); });

  const el = h('section', { class: 'list' },
    opts.search === false && !filterEls.length ? null : h('div', { class: 'toolbar' },
      opts.search === false ? null : h('div', { class: 'filter filter-search' }, h('label', { for: searchId }, opts.searchLabel || 'Search'), search),
      filterEls),
    h('div', { class: 'table-wrap' }, table),
    h('div', { class: 'pager' }, summary,
      h('div', { class: 'pager-controls' },
        h('label', { for: sizeId, class: 'pager-size' }, 'Per page ', size), prev, next)));

  let seq = 0;
  let loadingTimer;
  async function load() {
    const my = ++seq;
    syncUrl();
    clearTimeout(loadingTimer);
    table.setAttribute('aria-busy', 'true');
    loadingTimer = setTimeout(() => {
      if (my === seq) replace(tbody, h('tr', { class: 'loading-row' }, h('td', { colspan: opts.columns.length }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Loading…')));
    }, 150);
    const query = { skip: state.skip, limit: state.limit, search: opts.search === false ? '' : state.search, ...(opts.extraQuery ? opts.extraQuery() : {}) };
    for (const f of filters) if (state.filters[f.name] !== '') query[f.name] = state.filters[f.name];
    try {
      const page = await api('GET', opts.path, { query });
      if (my !== seq) return;
      clearTimeout(loadingTimer);
      if (page.data.length === 0 && state.skip > 0 && page.total > 0) { state.skip = Math.max(0, page.total - state.limit); return load(); }
      replace(tbody, page.data.length
        ? page.data.map((row) => h('tr', null, opts.columns.map((c) => h('td', { class: c.class, 'data-label': c.label }, c.cell(row)))))
        : h('tr', { class: 'empty-row' }, h('td', { colspan: opts.columns.length }, state.search || filters.some((f) => state.filters[f.name] !== (f.default ?? '')) ? 'Nothing matches these filters.' : (opts.empty || 'Nothing here yet.'))));
      const from = page.total ? state.skip + 1 : 0;
      const to = state.skip + page.data.length;
      replace(summary, page.total ? `${from}–${to} of ${page.total}` : '0 results');
      prev.disabled = state.skip === 0;
      next.disabled = !page.has_more;
      if (opts.onLoad) opts.onLoad(page);
    } catch (e) {
      if (my !== seq) return;
      clearTimeout(loadingTimer);
      replace(tbody, h('tr', { class: 'error-row' }, h('td', { colspan: opts.columns.length },
        h('span', { role: 'alert' }, errText(e)), ' ', button('Retry', () => load(), { small: true }))));
      replace(summary, '');
    } finally {
      if (my === seq) table.removeAttribute('aria-busy');
    }
  }

  function syncUrl() {
    const p = new URLSearchParams(location.search);
    const set = (k, v, def) => (v === def || v === '' ? p.delete(prefix + k) : p.set(prefix + k, v));
    set('search', state.search, '');
    set('skip', String(state.skip), '0');
    set('limit', String(state.limit), '20');
    for (const f of filters) set(f.name, state.filters[f.name], f.default ?? '');
    const qs = p.toString();
    history.replaceState(history.state, '', location.pathname + (qs ? '?' + qs : ''));
  }

  load();
  return { el, reload: load };
}

export function emptyState(text) {
  return h('p', { class: 'empty' }, text);
}

/** The words of a search query (letters and digits, 2 characters or more), lower-cased, unique. */
export function queryWords(q) {
  return [...new Set((String(q || '').toLowerCase().match(/[\p{L}\p{N}]{2,}/gu) || []))];
}

/**
 * `text` as text nodes with each word of `q` wrapped in <mark> where a word of the text starts
 * with it (so "encrypt" marks "encrypted"), case-insensitively. DOM nodes, never HTML.
 */
export function highlight(text, q) {
  const words = queryWords(q).sort((a, b) => b.length - a.length);
  const s = String(text ?? '');
  if (!words.length) return [s];
  const esc = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  const re = new RegExp(`(?<![\\p{L}\\p{N}])(${esc.join('|')})`, 'giu');
  return s.split(re).map((part, i) => (i % 2 ? h('mark', null, part) : part)).filter((p) => p !== '');
}

/** A retrieval score: three decimals, or three significant digits when it is that small (BM25 over few documents). */
export const fmtScore = (x) => (typeof x !== 'number' || !Number.isFinite(x) ? '—' : Math.abs(x) >= 0.01 || x === 0 ? x.toFixed(3) : x.toPrecision(3));
