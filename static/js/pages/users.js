import { h, replace } from '../dom.js';
import { api, listAll } from '../api.js';
import { pageHeader, listView, formDialog, confirmAction, button, badge, notify, act } from '../ui.js';

export async function usersPage(main, _params, ctx) {
  const me = ctx.me;
  const roles = ctx.can('roles:read') ? await listAll('/roles').catch(() => []) : [];
  const orgs = ctx.isSuper ? await listAll('/organizations').catch(() => []) : [];
  const roleName = (id) => { const r = roles.find((x) => x.id === id); return r ? r.name : (id ? '—' : 'none'); };
  const orgName = (id) => { const o = orgs.find((x) => x.id === id); return o ? o.name : '—'; };
  const rolesOf = (orgId) => roles.filter((r) => r.organization_id === orgId);

  const filters = [{ name: 'is_active', label: 'Status', options: [['', 'Active'], ['false', 'Deactivated']] }];
  if (roles.length) {
    filters.push({ name: 'role_id', label: 'Role', options: [['', 'Any role'], ...roles.map((r) => [r.id, ctx.isSuper && orgs.length > 1 ? `${r.name} (${orgName(r.organization_id)})` : r.name])] });
  }
  if (ctx.isSuper) filters.push({ name: 'organization_id', label: 'Organization', options: [['', 'All organizations'], ...orgs.map((o) => [o.id, o.name])] });

  const mayTouch = (u) => !u.is_superuser || me.is_superuser;
  const columns = [
    { label: 'User', cell: (u) => h('div', null, h('div', { class: 'cell-main' }, u.username, u.id === me.id ? h('span', { class: 'muted' }, ' (you)') : null), u.full_name ? h('div', { class: 'muted small' }, u.full_name) : null) },
    { label: 'E-mail', class: 'break', cell: (u) => u.email },
    { label: ctx.isSuper ? 'Role · organization' : 'Role', cell: (u) => h('div', null,
      h('div', null, u.is_superuser ? [badge('superuser', 'accent'), ' '] : null, roleName(u.role_id)),
      ctx.isSuper ? h('div', { class: 'muted small' }, orgName(u.organization_id)) : null) },
  ];
  columns.push(
    { label: 'Status', cell: (u) => (u.is_active ? badge('active', 'ok') : badge('deactivated', 'muted')) },
    { label: 'Actions', class: 'actions', cell: rowActions },
  );

  function rowActions(u) {
    const out = [];
    if ((ctx.can('users:write') || u.id === me.id) && mayTouch(u)) out.push(button('Edit', () => edit(u), { small: true, 'aria-label': `Edit ${u.username}` }));
    if (ctx.can('roles:write') && mayTouch(u) && roles.length) out.push(button('Role', () => changeRole(u), { small: true, 'aria-label': `Change role of ${u.username}` }));
    if (u.is_active && ctx.can('users:delete') && u.id !== me.id && mayTouch(u)) {
      out.push(button('Deactivate', (ev) => deactivate(u, ev.currentTarget), { small: true, kind: 'danger', 'aria-label': `Deactivate ${u.username}` }));
    }
    if (!u.is_active && ctx.can('users:write') && mayTouch(u)) {
      out.push(button('Reactivate', (ev) => act(ev.currentTarget, () => api('POST', `/users/${u.id}/activate`), `${u.username} reactivated.`).then(list.reload), { small: true, 'aria-label': `Reactivate ${u.username}` }));
    }
    return h('div', { class: 'row-actions' }, out);
  }

  async function create() {
    const orgId = me.organization_id;
    const fields = [
      { name: 'username', label: 'Username', required: true, help: '3 to 50 letters, digits, “_”, “.” or “-”.', autocomplete: 'off' },
      { name: 'email', label: 'E-mail', type: 'email', required: true },
      { name: 'full_name', label: 'Full name' },
      { name: 'password', label: 'Password', type: 'password', required: true, help: '8 to 128 characters. Share it with the user; they can change it.' },
    ];
    if (ctx.isSuper) fields.push({ name: 'organization_id', label: 'Organization', type: 'select', value: orgId, options: orgs.map((o) => [o.id, o.name]), help: 'The new user gets a role of this organization.' });
    if (roles.length) fields.push({ name: 'role_id', label: 'Role', type: 'select', value: '', options: [['', 'member (default)'], ...rolesOf(orgId).map((r) => [r.id, r.name])] });
    if (ctx.isSuper) fields.push({ name: 'is_superuser', label: 'Superuser (may do everything in every organization)', type: 'checkbox' });
    const created = await formDialog({
      title: 'New user', submitLabel: 'Create user', fields,
      onSubmit: (v) => {
        const body = { username: v.username.trim(), email: v.email.trim(), password: v.password };
        if (v.full_name.trim()) body.full_name = v.full_name.trim();
        if (v.role_id) body.role_id = v.role_id;
        if (ctx.isSuper) {
          if (v.organization_id) body.organization_id = v.organization_id;
          if (v.is_superuser) body.is_superuser = true;
        }
        return api('POST', '/users', { body });
      },
    });
    if (created) { notify(`User ${created.username} created.`); list.reload(); }
  }
  // keep the role choices in step with the chosen organization (superuser)
  document.addEventListener('change', onOrgChange);
  function onOrgChange(ev) {
    if (!main.isConnected) { document.removeEventListener('change', onOrgChange); return; }
    const sel = ev.target;
    if (!(sel instanceof HTMLSelectElement) || sel.name !== 'organization_id' || !sel.closest('dialog')) return;
    const roleSel = sel.closest('form').querySelector('select[name=role_id]');
    if (!roleSel) return;
    replace(roleSel, h('option', { value: '' }, 'member (default)'), rolesOf(sel.value).map((r) => h('option', { value: r.id }, r.name)));
  }

  async function edit(u) {
    const fields = [
      { name: 'email', label: 'E-mail', type: 'email', required: true, value: u.email },
      { name: 'full_name', label: 'Full name', value: u.full_name || '' },
    ];
    if (ctx.can('users:write')) fields.push({ name: 'password', label: 'New password', type: 'password', help: 'Leave empty to keep the current password. Setting one signs the user out everywhere.' });
    if (ctx.isSuper && u.id !== me.id) fields.push({ name: 'is_superuser', label: 'Superuser', type: 'checkbox', value: u.is_superuser });
    const saved = await formDialog({
      title: `Edit ${u.username}`, fields,
      onSubmit: (v) => {
        const body = { email: v.email.trim(), full_name: v.full_name.trim() || null };
        if (v.password) body.password = v.password;
        if ('is_superuser' in v && v.is_superuser !== u.is_superuser) body.is_superuser = v.is_superuser;
        return api('PUT', `/users/${u.id}`, { body });
      },
    });
    if (saved) { notify(`${saved.username} saved.`); list.reload(); }
  }

  async function changeRole(u) {
    const choices = rolesOf(u.organization_id);
    const saved = await formDialog({
      title: `Role of ${u.username}`, submitLabel: 'Change role',
      intro: 'The new role takes effect on the user\'s next request.',
      fields: [{ name: 'role_id', label: 'Role', type: 'select', value: u.role_id || '', options: choices.map((r) => [r.id, r.is_system ? `${r.name} (system)` : r.name]) }],
      onSubmit: (v) => api('POST', `/users/${u.id}/role`, { body: { role_id: v.role_id } }),
    });
    if (saved) { notify(`${saved.username} now has the role ${roleName(saved.role_id)}.`); list.reload(); }
  }

  async function deactivate(u, btn) {
    if (!(await confirmAction(`Deactivate ${u.username}? They are signed out at once and can no longer sign in. You can reactivate them later.`, { confirmLabel: 'Deactivate' }))) return;
    await act(btn, () => api('DELETE', `/users/${u.id}`), `${u.username} deactivated.`);
    list.reload();
  }

  const list = listView({ path: '/users', label: 'Users', columns, filters, searchLabel: 'Search users', searchPlaceholder: 'Username, e-mail or name', empty: 'No users yet.' });
  replace(main,
    pageHeader('Users', ctx.can('users:write') ? button('New user', create, { kind: 'primary', 'data-testid': 'new-user' }) : null),
    list.el);
  if (new URLSearchParams(location.search).get('new') === '1' && ctx.can('users:write')) {
    history.replaceState(null, '', location.pathname);
    create();
  }
}
