import { h, replace, fmtDay } from '../dom.js';
import { api, listAll } from '../api.js';
import { pageHeader, listView, formDialog, button, badge, notify } from '../ui.js';

const orgFields = (o = {}) => [
  { name: 'name', label: 'Name', required: true, value: o.name || '' },
  { name: 'domain', label: 'Domain', value: o.domain || '', placeholder: 'example.com' },
  { name: 'description', label: 'Description', type: 'textarea', value: o.description || '' },
];

function mayEdit(ctx, o) {
  return ctx.isSuper || (o.id === ctx.me.organization_id && ctx.can('organizations:write'));
}

function editOrg(o) {
  return formDialog({
    title: `Edit ${o.name}`, fields: orgFields(o),
    onSubmit: (v) => api('PUT', `/organizations/${o.id}`, { body: { name: v.name.trim(), domain: v.domain.trim() || null, description: v.description.trim() || null } }),
  });
}

export async function orgsPage(main, _params, ctx) {
  const columns = [
    { label: 'Name', cell: (o) => h('a', { href: `/admin/organizations/${o.id}`, class: 'cell-main' }, o.name) },
    { label: 'Domain', cell: (o) => o.domain || '—' },
    { label: 'Description', class: 'wrap', cell: (o) => o.description || '—' },
    { label: 'Status', cell: (o) => (o.is_active ? badge('active', 'ok') : badge('inactive', 'muted')) },
    { label: 'Created', cell: (o) => fmtDay(o.created_at) },
    { label: 'Actions', class: 'actions', cell: (o) => h('div', { class: 'row-actions' },
      h('a', { class: 'btn btn-sm', href: `/admin/organizations/${o.id}`, 'aria-label': `Members of ${o.name}` }, 'Members'),
      mayEdit(ctx, o) ? button('Edit', async () => { if (await editOrg(o)) { notify('Organization saved.'); list.reload(); } }, { small: true, 'aria-label': `Edit ${o.name}` }) : null) },
  ];
  async function create() {
    const o = await formDialog({
      title: 'New organization', submitLabel: 'Create organization', fields: orgFields(),
      intro: 'It gets the two system roles, admin and member. Move users into it from its members page.',
      onSubmit: (v) => {
        const body = { name: v.name.trim() };
        if (v.domain.trim()) body.domain = v.domain.trim();
        if (v.description.trim()) body.description = v.description.trim();
        return api('POST', '/organizations', { body });
      },
    });
    if (o) { notify(`Organization ${o.name} created.`); list.reload(); }
  }
  const list = listView({
    path: '/organizations', label: 'Organizations', columns, searchLabel: 'Search organizations', searchPlaceholder: 'Name or domain',
    filters: ctx.isSuper ? [{ name: 'is_active', label: 'Status', options: [['', 'Any'], ['true', 'Active'], ['false', 'Inactive']] }] : [],
  });
  replace(main,
    pageHeader('Organizations', ctx.isSuper ? button('New organization', create, { kind: 'primary' }) : null),
    ctx.isSuper ? null : h('p', { class: 'muted' }, 'You see your own organization.'),
    list.el);
}

export async function orgDetailPage(main, { id }, ctx) {
  const org = await api('GET', `/organizations/${encodeURIComponent(id)}`);
  const roles = ctx.can('roles:read') ? await listAll('/roles', ctx.isSuper ? { organization_id: org.id } : {}).catch(() => []) : [];
  const roleName = (rid) => (roles.find((r) => r.id === rid) || {}).name || '—';
  const info = h('dl', { class: 'kv' });
  const fill = (o) => replace(info,
    h('dt', null, 'Domain'), h('dd', null, o.domain || '—'),
    h('dt', null, 'Description'), h('dd', { class: 'wrap' }, o.description || '—'),
    h('dt', null, 'Status'), h('dd', null, o.is_active ? badge('active', 'ok') : badge('inactive', 'muted')),
    h('dt', null, 'Created'), h('dd', null, fmtDay(o.created_at)));
  fill(org);
  const title = h('h1', { tabindex: '-1' }, org.name);
  const actions = [];
  if (mayEdit(ctx, org)) {
    actions.push(button('Edit', async () => {
      const o = await editOrg(org);
      if (o) { Object.assign(org, o); replace(title, o.name); fill(o); notify('Organization saved.'); }
    }));
  }
  if (ctx.isSuper) actions.push(button('Move a user here', moveUser, { kind: 'primary' }));

  async function moveUser() {
    const users = (await listAll('/users', {}, 500)).filter((u) => u.organization_id !== org.id);
    if (!users.length) { notify('Every user already belongs to this organization.'); return; }
    const moved = await formDialog({
      title: `Move a user into ${org.name}`, submitLabel: 'Move user',
      intro: 'The user gets this organization\'s member role and leaves the projects of their old organization.',
      fields: [{ name: 'user_id', label: 'User', type: 'select', options: users.map((u) => [u.id, u.full_name ? `${u.username} — ${u.full_name}` : u.username]) }],
      onSubmit: (v) => api('POST', `/organizations/${org.id}/members/${v.user_id}`),
    });
    if (moved) { notify(`${moved.username} moved into ${org.name}.`); list.reload(); }
  }

  const list = listView({
    path: `/organizations/${org.id}/members`, label: 'Members', searchLabel: 'Search members', searchPlaceholder: 'Username, e-mail or name',
    filters: [{ name: 'is_active', label: 'Status', options: [['', 'Active'], ['false', 'Deactivated']] }],
    columns: [
      { label: 'User', cell: (u) => h('div', null, h('div', { class: 'cell-main' }, u.username), u.full_name ? h('div', { class: 'muted small' }, u.full_name) : null) },
      { label: 'E-mail', class: 'break', cell: (u) => u.email },
      { label: 'Role', cell: (u) => [u.is_superuser ? badge('superuser', 'accent') : null, ' ', roleName(u.role_id)] },
      { label: 'Status', cell: (u) => (u.is_active ? badge('active', 'ok') : badge('deactivated', 'muted')) },
    ],
  });
  replace(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/admin/organizations' }, 'Organizations'), ' / '),
    h('div', { class: 'page-head' }, title, h('div', { class: 'page-actions' }, actions)),
    h('section', { class: 'card' }, info),
    h('h2', null, 'Members'),
    list.el);
}
