import { h, replace } from '../dom.js';
import { api } from '../api.js';
import { pageHeader } from '../ui.js';

const CARDS = [
  { label: 'Users', path: '/users', need: 'users:read', link: '/admin/users' },
  { label: 'Projects', path: '/projects', need: 'projects:read', link: '/admin/projects' },
  { label: 'Agent configs', path: '/agent-configs', need: 'agents:read', link: '/admin/agents' },
  { label: 'My conversations', path: '/conversations', need: 'conversations:write', link: '/admin/conversations' },
];

export async function dashboardPage(main, _params, ctx) {
  const me = ctx.me;
  const cards = CARDS.filter((c) => ctx.can(c.need)).map((c) => {
    const value = h('span', { class: 'stat-value', 'aria-busy': 'true' }, '…');
    api('GET', c.path, { query: { limit: 1 } }).then(
      (p) => { replace(value, String(p.total)); value.removeAttribute('aria-busy'); },
      () => { replace(value, '—'); value.removeAttribute('aria-busy'); });
    return h('a', { class: 'card stat', href: c.link, 'data-testid': 'stat-' + c.path.slice(1) }, h('span', { class: 'stat-label' }, c.label), value);
  });
  const status = h('dl', { class: 'kv' }, h('dt', null, 'Status'), h('dd', null, 'Loading…'));
  api('GET', '/status').then((s) => {
    replace(status,
      h('dt', null, 'Status'), h('dd', null, h('span', { class: ['badge', s.status === 'ok' ? 'badge-ok' : 'badge-danger'] }, s.status)),
      h('dt', null, 'Database'), h('dd', null, s.database),
      h('dt', null, 'Version'), h('dd', { 'data-testid': 'version' }, s.version));
  }, (e) => replace(status, h('dt', null, 'Status'), h('dd', null, h('span', { class: 'badge badge-danger' }, 'unreachable'), ' ', e.detail || '')));

  const quick = [];
  if (ctx.can('conversations:write')) quick.push(h('a', { class: 'btn', href: '/admin/conversations?new=1' }, 'Start a conversation'));
  if (ctx.can('users:write')) quick.push(h('a', { class: 'btn', href: '/admin/users?new=1' }, 'Add a user'));
  if (ctx.can('agents:write')) quick.push(h('a', { class: 'btn', href: '/admin/agents?new=1' }, 'Configure an agent'));

  replace(main,
    pageHeader('Dashboard'),
    h('p', { class: 'lead' }, 'Welcome, ', h('strong', null, me.full_name || me.username), '. ',
      me.is_superuser ? 'You are a superuser: you can manage every organization.'
        : `You are signed in with the role ${me.role ? me.role.name : '(none)'}.`),
    cards.length ? h('div', { class: 'stats' }, cards) : null,
    h('div', { class: 'grid-2' },
      h('section', { class: 'card' }, h('h2', null, 'Server'), status),
      h('section', { class: 'card' }, h('h2', null, 'Your permissions'),
        me.is_superuser ? h('p', null, 'All permissions, in every organization.')
          : me.permissions.length ? h('ul', { class: 'tags' }, me.permissions.map((p) => h('li', { class: 'tag' }, p))) : h('p', null, 'None.'))),
    quick.length ? h('section', { class: 'card' }, h('h2', null, 'Quick actions'), h('div', { class: 'quick' }, quick)) : null);
}
