// The audit log (org admins: their organization; superusers: all): filters, the changes of an
// event in a dialog, and an export of the filtered events as CSV.
import { h, fmtDate, debounce } from '../dom.js';
import { api } from '../api.js';
import { pageHeader, listView, showDialog, button, notify } from '../ui.js';

const ACTIONS = [
  'auth.login', 'auth.login_failed', 'auth.login_locked', 'auth.logout', 'auth.refresh', 'auth.refresh_reuse',
  'auth.password_change', 'auth.register',
  'user.create', 'user.update', 'user.deactivate', 'user.activate', 'user.assign_role',
  'organization.create', 'organization.update', 'organization.add_member',
  'project.create', 'project.update', 'project.delete', 'project.add_member', 'project.remove_member',
  'role.create', 'role.update', 'role.delete', 'role.grant_permission', 'role.revoke_permission',
  'agent_config.create', 'agent_config.update', 'agent_config.delete', 'agent_config.activate',
  'conversation.create', 'conversation.update', 'conversation.delete', 'message.create', 'message.delete',
  'completion.create', 'completion.cancel',
  'document.create', 'document.reindex', 'document.delete',
  'api_key.create', 'api_key.delete',
];
const TARGETS = ['user', 'session', 'organization', 'project', 'role', 'agent_config', 'conversation', 'message', 'completion_job', 'document', 'api_key'];
const COLUMNS = ['id', 'at', 'organization_id', 'actor_user_id', 'actor_api_key_id', 'action', 'target_type', 'target_id', 'ip', 'user_agent', 'changes'];
const EXPORT_MAX = 10000;

/** One CSV field (RFC 4180), with spreadsheet formulas defused. */
function csvField(v) {
  let s = v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Usernames by user id, each asked once per page visit (null: not readable, e.g. no users:read). */
const usernames = new Map();
function username(id) {
  if (!usernames.has(id)) usernames.set(id, api('GET', `/users/${id}`).then((u) => u.username, () => null));
  return usernames.get(id);
}

/** A user id shown by its username once known. */
function userRef(id) {
  const el = h('code', { class: 'small', title: id }, id.slice(0, 8));
  username(id).then((name) => { if (name) el.replaceWith(h('span', { title: id }, name)); });
  return el;
}

function who(e, ctx) {
  if (!e.actor_user_id) return h('span', { class: 'muted' }, 'nobody signed in');
  const user = e.actor_user_id === ctx.me.id ? 'you' : userRef(e.actor_user_id);
  return e.actor_api_key_id ? h('span', null, user, h('span', { class: 'muted small' }, ' with API key')) : user;
}

function details(e) {
  const rows = [
    ['When', fmtDate(e.at)], ['Action', e.action], ['Organization', e.organization_id || '—'],
    ['Actor', e.actor_user_id ? h('span', null, userRef(e.actor_user_id), ' ', h('code', { class: 'small' }, e.actor_user_id)) : 'nobody signed in'],
    ['API key', e.actor_api_key_id || '—'],
    ['Target', e.target_type ? `${e.target_type} ${e.target_id || ''}` : '—'],
    ['Client address', e.ip || '—'], ['User agent', e.user_agent || '—'],
  ];
  const changes = e.changes && typeof e.changes === 'object' ? Object.entries(e.changes) : [];
  return [
    h('dl', { class: 'meta' }, rows.flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)])),
    h('h3', null, 'Changes'),
    changes.length
      ? h('table', { class: 'table' }, h('caption', { class: 'sr-only' }, 'Changed fields'),
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, 'New value'))),
        h('tbody', null, changes.map(([k, v]) => h('tr', null, h('td', null, h('code', null, k)),
          h('td', null, h('code', { class: 'wrap' }, typeof v === 'string' ? v : JSON.stringify(v)))))))
      : h('p', { class: 'muted' }, 'No fields recorded for this event.'),
  ];
}

export async function auditPage(main, _params, ctx) {
  usernames.clear();
  const params = new URLSearchParams(location.search);
  const inputs = {
    action: h('select', { id: 'audit-action' }, [h('option', { value: '' }, 'All'), ...ACTIONS.map((a) => h('option', { value: a, selected: params.get('action') === a }, a))]),
    target_type: h('select', { id: 'audit-target-type' }, [h('option', { value: '' }, 'All'), ...TARGETS.map((t) => h('option', { value: t, selected: params.get('target_type') === t }, t))]),
    actor_user_id: h('input', { id: 'audit-actor', type: 'text', class: 'mono', placeholder: 'user id', value: params.get('actor_user_id') || '', autocomplete: 'off' }),
    target_id: h('input', { id: 'audit-target', type: 'text', class: 'mono', placeholder: 'id', value: params.get('target_id') || '', autocomplete: 'off' }),
    from: h('input', { id: 'audit-from', type: 'date', value: params.get('from') || '' }),
    to: h('input', { id: 'audit-to', type: 'date', value: params.get('to') || '' }),
  };
  const labels = { action: 'Action', target_type: 'Target type', actor_user_id: 'Actor', target_id: 'Target id', from: 'From', to: 'To' };
  const query = () => Object.fromEntries(Object.entries(inputs).map(([k, el]) => [k, el.value.trim()]).filter(([, v]) => v));
  const sync = () => {
    const p = new URLSearchParams(location.search);
    for (const [k, el] of Object.entries(inputs)) (el.value.trim() ? p.set(k, el.value.trim()) : p.delete(k));
    const qs = p.toString();
    history.replaceState(history.state, '', location.pathname + (qs ? `?${qs}` : ''));
  };
  const columns = [
    { label: 'When', cell: (e) => h('time', { datetime: e.at }, fmtDate(e.at)) },
    { label: 'Action', cell: (e) => h('code', null, e.action) },
    { label: 'Actor', cell: (e) => who(e, ctx) },
    { label: 'Target', cell: (e) => (e.target_type ? h('span', null, e.target_type, ' ', h('code', { class: 'small' }, (e.target_id || '').slice(0, 8))) : '—') },
    { label: 'Client', cell: (e) => e.ip || '—' },
    { label: 'Details', class: 'actions', cell: (e) => button('Details', () => showDialog(`${e.action} at ${fmtDate(e.at)}`, details(e), { wide: true }), { small: true, 'aria-label': `Details of ${e.action} at ${fmtDate(e.at)}` }) },
  ];
  const list = listView({ path: '/audit-events', label: 'Audit events', columns, search: false, extraQuery: query, empty: 'No events yet.' });
  const reload = () => { sync(); list.reload(); };
  for (const el of Object.values(inputs)) el.addEventListener(el.tagName === 'INPUT' && el.type === 'text' ? 'input' : 'change', el.type === 'text' ? debounce(reload, 300) : reload);

  async function exportCsv(ev) {
    const btn = ev.currentTarget;
    btn.disabled = true;
    try {
      const rows = [];
      for (let skip = 0; skip < EXPORT_MAX; skip += 100) {
        const page = await api('GET', '/audit-events', { query: { ...query(), skip, limit: 100 } });
        rows.push(...page.data);
        if (!page.has_more) break;
      }
      const text = [COLUMNS.join(','), ...rows.map((r) => COLUMNS.map((c) => csvField(r[c])).join(','))].join('\r\n') + '\r\n';
      const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
      const a = h('a', { href: url, download: `audit-events-${new Date().toISOString().slice(0, 10)}.csv` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      notify(`Exported ${rows.length} events${rows.length >= EXPORT_MAX ? ` (the first ${EXPORT_MAX}; narrow the filters for the rest)` : ''}.`);
    } catch (e) {
      notify(`Export failed: ${e.message}`, 'error');
    } finally {
      btn.disabled = false;
    }
  }

  main.replaceChildren(
    pageHeader('Audit log', button('Export CSV', exportCsv, { id: 'audit-export' })),
    h('p', { class: 'muted' }, `${ctx.isSuper ? 'Every organization' : 'Your organization'}: each successful change and sign-in event, newest first. Passwords, tokens and keys are never recorded.`),
    h('div', { class: 'toolbar' }, Object.entries(inputs).map(([k, el]) => h('div', { class: 'filter' }, h('label', { for: el.id }, labels[k]), el))),
    list.el);
}
