import { h, replace, fmtDay } from '../dom.js';
import { api, listAll } from '../api.js';
import { pageHeader, listView, formDialog, confirmAction, button, badge, notify, act } from '../ui.js';

const mayManage = (ctx, p) => ctx.isOrgAdmin || p.created_by === ctx.me.id;

function projectForm(ctx, p) {
  return formDialog({
    title: p ? `Edit ${p.name}` : 'New project', submitLabel: p ? 'Save' : 'Create project',
    fields: [
      { name: 'name', label: 'Name', required: true, value: p ? p.name : '' },
      { name: 'description', label: 'Description', type: 'textarea', value: p ? p.description || '' : '' },
    ],
    onSubmit: (v) => {
      const body = { name: v.name.trim(), description: v.description.trim() };
      return p ? api('PUT', `/projects/${p.id}`, { body }) : api('POST', '/projects', { body });
    },
  });
}

async function deleteProject(p, btn) {
  if (!(await confirmAction(`Delete the project ${p.name}? It disappears from lists; its conversations and agent configs keep their data.`, { confirmLabel: 'Delete project' }))) return false;
  return !!(await act(btn, () => api('DELETE', `/projects/${p.id}`).then(() => true), `Project ${p.name} deleted.`));
}

export async function projectsPage(main, _params, ctx) {
  const columns = [
    { label: 'Name', cell: (p) => h('a', { class: 'cell-main', href: `/admin/projects/${p.id}` }, p.name) },
    { label: 'Description', class: 'wrap', cell: (p) => p.description || '—' },
    { label: 'Members', cell: (p) => String(p.member_count) },
    { label: 'Status', cell: (p) => (p.is_active ? badge('active', 'ok') : badge('deleted', 'muted')) },
    { label: 'Created', cell: (p) => fmtDay(p.created_at) },
    { label: 'Actions', class: 'actions', cell: (p) => h('div', { class: 'row-actions' },
      h('a', { class: 'btn btn-sm', href: `/admin/projects/${p.id}`, 'aria-label': `Open ${p.name}` }, 'Open'),
      p.is_active && ctx.can('projects:write') && mayManage(ctx, p) ? button('Edit', async () => { const s = await projectForm(ctx, p); if (s) { notify('Project saved.'); list.reload(); } }, { small: true, 'aria-label': `Edit ${p.name}` }) : null,
      p.is_active && ctx.can('projects:delete') && mayManage(ctx, p) ? button('Delete', async (ev) => { if (await deleteProject(p, ev.currentTarget)) list.reload(); }, { small: true, kind: 'danger', 'aria-label': `Delete ${p.name}` }) : null,
      !p.is_active && ctx.can('projects:write') && mayManage(ctx, p) ? button('Restore', (ev) => act(ev.currentTarget, () => api('PUT', `/projects/${p.id}`, { body: { is_active: true } }), `Project ${p.name} restored.`).then(list.reload), { small: true }) : null) },
  ];
  const list = listView({
    path: '/projects', label: 'Projects', columns, searchLabel: 'Search projects', searchPlaceholder: 'Name or description',
    filters: [{ name: 'is_active', label: 'Status', options: [['', 'Active'], ['false', 'Deleted']] }],
    empty: 'No projects yet.',
  });
  replace(main,
    pageHeader('Projects', ctx.can('projects:write') ? button('New project', async () => {
      const p = await projectForm(ctx);
      if (p) { notify(`Project ${p.name} created. You are its first member.`); list.reload(); }
    }, { kind: 'primary' }) : null),
    list.el);
}

export async function projectDetailPage(main, { id }, ctx) {
  const p = await api('GET', `/projects/${encodeURIComponent(id)}`);
  const manage = mayManage(ctx, p) && p.is_active;
  const title = h('h1', { tabindex: '-1' }, p.name);
  const info = h('dl', { class: 'kv' });
  const fill = () => replace(info,
    h('dt', null, 'Description'), h('dd', { class: 'wrap' }, p.description || '—'),
    h('dt', null, 'Status'), h('dd', null, p.is_active ? badge('active', 'ok') : badge('deleted', 'muted')),
    h('dt', null, 'Members'), h('dd', null, String(p.member_count)),
    h('dt', null, 'Created'), h('dd', null, fmtDay(p.created_at)));
  fill();

  const actions = [];
  if (manage && ctx.can('projects:write')) actions.push(button('Edit', async () => { const s = await projectForm(ctx, p); if (s) { Object.assign(p, s); replace(title, s.name); fill(); notify('Project saved.'); } }));
  if (manage && ctx.can('projects:delete')) actions.push(button('Delete', async (ev) => { if (await deleteProject(p, ev.currentTarget)) ctx.navigate('/projects'); }, { kind: 'danger' }));
  if (manage && ctx.can('users:read')) actions.push(button('Add member', addMember, { kind: 'primary' }));

  async function addMember() {
    const current = new Set((await listAll(`/projects/${p.id}/members`)).map((u) => u.id));
    const users = (await listAll('/users', ctx.isSuper ? { organization_id: p.organization_id } : {})).filter((u) => !current.has(u.id));
    if (!users.length) { notify('Every active user of the organization is already a member.'); return; }
    const u = await formDialog({
      title: `Add a member to ${p.name}`, submitLabel: 'Add member',
      fields: [{ name: 'user_id', label: 'User', type: 'select', options: users.map((u) => [u.id, u.full_name ? `${u.username} — ${u.full_name}` : u.username]) }],
      onSubmit: (v) => api('POST', `/projects/${p.id}/members/${v.user_id}`).then(() => users.find((x) => x.id === v.user_id)),
    });
    if (u) { notify(`${u.username} added.`); p.member_count++; fill(); list.reload(); }
  }

  async function remove(u, btn) {
    if (!(await confirmAction(`Remove ${u.username} from ${p.name}?`, { confirmLabel: 'Remove' }))) return;
    if (await act(btn, () => api('DELETE', `/projects/${p.id}/members/${u.id}`).then(() => true), `${u.username} removed.`)) { p.member_count--; fill(); list.reload(); }
  }

  const list = listView({
    path: `/projects/${p.id}/members`, label: 'Members', searchLabel: 'Search members', searchPlaceholder: 'Username, e-mail or name',
    columns: [
      { label: 'User', cell: (u) => h('div', null, h('div', { class: 'cell-main' }, u.username), u.full_name ? h('div', { class: 'muted small' }, u.full_name) : null) },
      { label: 'E-mail', class: 'break', cell: (u) => u.email },
      { label: 'Status', cell: (u) => (u.is_active ? badge('active', 'ok') : badge('deactivated', 'muted')) },
      { label: 'Actions', class: 'actions', cell: (u) => (manage ? button('Remove', (ev) => remove(u, ev.currentTarget), { small: true, kind: 'danger', 'aria-label': `Remove ${u.username}` }) : '') },
    ],
    empty: 'No members.',
  });
  replace(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/admin/projects' }, 'Projects'), ' / '),
    h('div', { class: 'page-head' }, title, h('div', { class: 'page-actions' }, actions)),
    h('section', { class: 'card' }, info),
    h('h2', null, 'Members'),
    manage ? null : h('p', { class: 'muted' }, 'Only the project\'s creator or an organization admin can change its members.'),
    list.el);
}
