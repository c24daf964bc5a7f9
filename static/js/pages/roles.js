import { h, replace } from '../dom.js';
import { api, listAll } from '../api.js';
import { pageHeader, listView, formDialog, confirmAction, button, badge, notify, act, notifyError } from '../ui.js';

export async function rolesPage(main, _params, ctx) {
  const perms = await listAll('/roles/permissions');
  const canWrite = ctx.can('roles:write');
  const orgs = ctx.isSuper ? await listAll('/organizations').catch(() => []) : [];
  const matrix = h('div', { class: 'table-wrap matrix-wrap' });
  const ownOrg = (r) => r.organization_id === ctx.me.organization_id;

  const columns = [
    { label: 'Name', cell: (r) => h('span', { class: 'cell-main' }, r.name) },
    { label: 'Description', class: 'wrap', cell: (r) => r.description || '—' },
    { label: 'Type', cell: (r) => (r.is_system ? badge('system', 'muted') : badge('custom', 'accent')) },
    { label: 'Permissions', cell: (r) => `${r.permissions.length} of ${perms.length}` },
    { label: 'Users', cell: (r) => String(r.user_count) },
    { label: 'Actions', class: 'actions', cell: (r) => h('div', { class: 'row-actions' },
      r.is_system ? h('span', { class: 'muted small' }, 'read-only') : null,
      !r.is_system && canWrite ? button('Edit', () => edit(r), { small: true, 'aria-label': `Edit role ${r.name}` }) : null,
      !r.is_system && canWrite ? button('Delete', (ev) => del(r, ev.currentTarget), { small: true, kind: 'danger', 'aria-label': `Delete role ${r.name}` }) : null) },
  ];

  const permOptions = perms.map((p) => [p.name, p.name, p.description]);

  async function create() {
    const r = await formDialog({
      title: 'New role', submitLabel: 'Create role', wide: true,
      intro: ctx.isSuper ? 'The role is created in your own organization.' : null,
      fields: [
        { name: 'name', label: 'Name', required: true },
        { name: 'description', label: 'Description', type: 'textarea', rows: 2 },
        { name: 'permissions', label: 'Permissions', type: 'checkboxes', options: permOptions, value: [] },
      ],
      onSubmit: (v) => {
        const body = { name: v.name.trim(), permissions: v.permissions };
        if (v.description.trim()) body.description = v.description.trim();
        return api('POST', '/roles', { body });
      },
    });
    if (r) { notify(`Role ${r.name} created.`); list.reload(); }
  }

  async function edit(role) {
    const r = await formDialog({
      title: `Edit role ${role.name}`, wide: true,
      fields: [
        { name: 'name', label: 'Name', required: true, value: role.name },
        { name: 'description', label: 'Description', type: 'textarea', rows: 2, value: role.description || '' },
        { name: 'permissions', label: 'Permissions', type: 'checkboxes', options: permOptions, value: role.permissions },
      ],
      onSubmit: (v) => api('PUT', `/roles/${role.id}`, { body: { name: v.name.trim(), description: v.description.trim(), permissions: v.permissions } }),
    });
    if (r) { notify(`Role ${r.name} saved.`); list.reload(); }
  }

  async function del(role, btn) {
    if (!(await confirmAction(`Delete the role ${role.name}? This cannot be undone.`, { confirmLabel: 'Delete role' }))) return;
    if (await act(btn, () => api('DELETE', `/roles/${role.id}`).then(() => true), `Role ${role.name} deleted.`)) list.reload();
  }

  function drawMatrix(roles) {
    if (!roles.length) { replace(matrix, h('p', { class: 'muted' }, 'No roles to show.')); return; }
    const head = h('tr', null, h('th', { scope: 'col' }, 'Permission'), roles.map((r) => h('th', { scope: 'col', class: 'matrix-role' }, r.name, r.is_system ? h('div', { class: 'muted small' }, 'system') : null)));
    const rows = perms.map((p) => h('tr', null,
      h('th', { scope: 'row', class: 'matrix-perm' }, h('code', null, p.name), h('div', { class: 'muted small' }, p.description)),
      roles.map((r) => {
        const editable = canWrite && !r.is_system && (ownOrg(r) || ctx.isSuper);
        const cb = h('input', {
          type: 'checkbox', checked: r.permissions.includes(p.name), disabled: !editable,
          'aria-label': `${r.name}: ${p.name}`, title: editable ? `${r.name}: ${p.name}` : (r.is_system ? 'System roles cannot be changed' : 'Needs roles:write'),
        });
        cb.addEventListener('change', async () => {
          const on = cb.checked;
          cb.disabled = true;
          try {
            const updated = await api(on ? 'POST' : 'DELETE', `/roles/${r.id}/permissions/${p.id}`);
            r.permissions = updated.permissions;
            notify(`${on ? 'Granted' : 'Revoked'} ${p.name} ${on ? 'to' : 'from'} ${r.name}.`);
          } catch (e) {
            cb.checked = !on;
            notifyError(e);
          } finally {
            cb.disabled = false;
          }
        });
        return h('td', { class: 'matrix-cell', 'data-label': r.name }, cb);
      })));
    replace(matrix, h('table', { class: 'table matrix', 'data-testid': 'permission-matrix' },
      h('caption', { class: 'sr-only' }, 'Permissions of each role'), h('thead', null, head), h('tbody', null, rows)));
  }

  const filters = ctx.isSuper ? [{ name: 'organization_id', label: 'Organization', default: ctx.me.organization_id, options: [['', 'All organizations'], ...orgs.map((o) => [o.id, o.name])] }] : [];
  const list = listView({
    path: '/roles', label: 'Roles', columns, filters, searchLabel: 'Search roles', searchPlaceholder: 'Name or description',
    onLoad: (page) => drawMatrix(page.data),
  });
  replace(main,
    pageHeader('Roles', canWrite ? button('New role', create, { kind: 'primary' }) : null),
    h('p', { class: 'muted' }, 'A role is a set of permissions. The system roles admin and member are read-only; create custom roles for anything else.'),
    list.el,
    h('h2', null, 'Permission matrix'),
    h('p', { class: 'muted' }, canWrite ? 'Tick a box to grant a permission to a role; changes apply at once, on the holders\' next request. The matrix shows the roles listed above.' : 'The permissions of the roles listed above.'),
    matrix);
}
