// API keys: create (the key is shown once, with a copy button), list, revoke.
import { h, replace, fmtDate, fmtDay } from '../dom.js';
import { api } from '../api.js';
import { pageHeader, listView, formDialog, showDialog, confirmAction, button, badge, notify, act } from '../ui.js';

function createKey(ctx) {
  const held = ctx.me.permissions || [];
  return formDialog({
    title: 'New API key', submitLabel: 'Create key',
    intro: 'Scripts send the key as "Authorization: Bearer cpk_…". It may do what both its permissions and your role allow.',
    fields: [
      { name: 'name', label: 'Name', required: true, value: '', help: 'What the key is for, e.g. nightly export.' },
      { name: 'permissions', label: 'Permissions', type: 'checkboxes', value: [], options: held.map((p) => [p, p]) },
      { name: 'expires', label: 'Expires on', type: 'date', help: 'The key stops working at the end of this day (UTC). Empty: never.' },
    ],
    onSubmit: (v) => {
      if (!v.permissions.length) throw new Error('permissions: choose at least one permission');
      const body = { name: v.name.trim(), permissions: v.permissions };
      if (v.expires) body.expires_at = `${v.expires}T23:59:59Z`;
      return api('POST', '/api-keys', { body });
    },
  });
}

async function showSecret(created) {
  const value = h('input', { id: 'new-api-key', class: 'mono', type: 'text', readonly: true, value: created.key, 'aria-describedby': 'new-api-key-help' });
  const status = h('span', { class: 'muted small', role: 'status' });
  const copy = button('Copy', async () => {
    try { await navigator.clipboard.writeText(created.key); replace(status, 'Copied.'); } catch { value.select(); replace(status, 'Selected: press Ctrl+C to copy.'); }
  }, { 'aria-label': 'Copy the key' });
  await showDialog(`API key ${created.name}`, [
    h('p', { id: 'new-api-key-help' }, 'Copy the key now: it is not shown again.'),
    h('div', { class: 'field' }, h('label', { for: 'new-api-key' }, 'Key'), h('div', { class: 'copy-row' }, value, copy), status),
  ], { wide: true });
}

export async function apiKeysPage(main, _params, ctx) {
  const columns = [
    { label: 'Name', cell: (k) => h('div', { class: 'cell-main' }, k.name) },
    { label: 'Key', cell: (k) => h('code', null, `${k.prefix}…`) },
    { label: 'Permissions', cell: (k) => h('ul', { class: 'tags' }, k.permissions.map((p) => h('li', { class: 'tag' }, p))) },
    ...(ctx.isOrgAdmin ? [{ label: 'Owner', cell: (k) => (k.user_id === ctx.me.id ? 'you' : h('code', { class: 'small' }, k.user_id)) }] : []),
    { label: 'Expires', cell: (k) => (k.expires_at ? (new Date(k.expires_at) < new Date() ? badge('expired', 'muted') : fmtDay(k.expires_at)) : 'never') },
    { label: 'Last used', cell: (k) => (k.last_used_at ? fmtDate(k.last_used_at) : '—') },
    { label: 'Created', cell: (k) => fmtDay(k.created_at) },
    { label: 'Actions', class: 'actions', cell: (k) => button('Revoke', (ev) => revoke(k, ev.currentTarget), { small: true, kind: 'danger', 'aria-label': `Revoke ${k.name}` }) },
  ];
  async function revoke(k, btn) {
    if (!(await confirmAction(`Revoke the API key ${k.name}? Scripts using it get 401 from their next request.`, { confirmLabel: 'Revoke key' }))) return;
    if (await act(btn, () => api('DELETE', `/api-keys/${k.id}`).then(() => true), `API key ${k.name} revoked.`)) list.reload();
  }
  const list = listView({ path: '/api-keys', label: 'API keys', columns, search: false, empty: 'No API keys yet.' });
  replace(main,
    pageHeader('API keys', button('New API key', async () => {
      const created = await createKey(ctx);
      if (created) { await showSecret(created); notify(`API key ${created.name} created.`); list.reload(); }
    }, { kind: 'primary' })),
    h('p', { class: 'muted' }, `${ctx.isSuper ? 'Every key of every organization' : ctx.isOrgAdmin ? 'Every key of your organization' : 'Your keys'}. Revoking one stops it at once.`),
    list.el);
}
