// Entry point: session gate, layout, client-side routing under /admin/.
import { h, replace } from './dom.js';
import { api, hasSession, onExpired, onBusy, logout } from './api.js';
import { notify, formDialog, button } from './ui.js';
import { loginPage } from './pages/login.js';
import { dashboardPage } from './pages/dashboard.js';
import { usersPage } from './pages/users.js';
import { orgsPage, orgDetailPage } from './pages/organizations.js';
import { rolesPage } from './pages/roles.js';
import { projectsPage, projectDetailPage } from './pages/projects.js';
import { agentsPage } from './pages/agents.js';
import { conversationsPage, conversationPage } from './pages/conversations.js';
import { documentsPage, documentDetailPage } from './pages/documents.js';
import { apiKeysPage } from './pages/apikeys.js';
import { auditPage } from './pages/audit.js';
import { usagePage } from './pages/usage.js';

const ROOT = '/admin';

/** Not a permission: pages for organization admins (and superusers). */
const ORG_ADMIN = 'org-admin';

/** Navigation entries; `need` is the permission the page's list needs. */
const NAV = [
  { path: '/', label: 'Dashboard' },
  { path: '/users', label: 'Users', need: 'users:read' },
  { path: '/organizations', label: 'Organizations', need: 'organizations:read' },
  { path: '/roles', label: 'Roles', need: 'roles:read' },
  { path: '/projects', label: 'Projects', need: 'projects:read' },
  { path: '/agents', label: 'Agent configs', need: 'agents:read' },
  { path: '/documents', label: 'Documents', need: 'agents:read' },
  { path: '/conversations', label: 'Conversations', need: 'conversations:write' },
  { path: '/usage', label: 'Usage' },
  { path: '/api-keys', label: 'API keys' },
  { path: '/audit', label: 'Audit log', need: ORG_ADMIN },
];

const ROUTES = [
  ['/', dashboardPage, 'Dashboard'],
  ['/users', usersPage, 'Users', 'users:read'],
  ['/organizations', orgsPage, 'Organizations', 'organizations:read'],
  ['/organizations/:id', orgDetailPage, 'Organization', 'organizations:read'],
  ['/roles', rolesPage, 'Roles', 'roles:read'],
  ['/projects', projectsPage, 'Projects', 'projects:read'],
  ['/projects/:id', projectDetailPage, 'Project', 'projects:read'],
  ['/agents', agentsPage, 'Agent configs', 'agents:read'],
  ['/documents', documentsPage, 'Documents', 'agents:read'],
  ['/documents/:id', documentDetailPage, 'Document', 'agents:read'],
  ['/conversations', conversationsPage, 'Conversations', 'conversations:write'],
  ['/conversations/:id', conversationPage, 'Conversation', 'conversations:write'],
  ['/usage', usagePage, 'Usage'],
  ['/api-keys', apiKeysPage, 'API keys'],
  ['/audit', auditPage, 'Audit log', ORG_ADMIN],
];

/** The signed-in user and what they may do. */
export const ctx = {
  me: null,
  can(perm) {
    if (perm === ORG_ADMIN) return this.isOrgAdmin;
    return !!this.me && (this.me.is_superuser || this.me.permissions.includes(perm));
  },
  get isSuper() { return !!this.me && this.me.is_superuser; },
  /** superuser, or holder of the system admin role of their organization */
  get isOrgAdmin() { return !!this.me && (this.me.is_superuser || (this.me.role && this.me.role.name === 'admin')); },
  navigate,
};

export function navigate(to, { replace: rep = false } = {}) {
  const url = to.startsWith(ROOT) ? to : ROOT + (to === '/' ? '/' : to);
  if (rep) history.replaceState(null, '', url); else history.pushState(null, '', url);
  render();
}

function routePath() {
  let p = location.pathname.startsWith(ROOT) ? location.pathname.slice(ROOT.length) : '/';
  if (p === '') p = '/';
  if (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1);
  return p;
}

function match(path) {
  for (const [pattern, page, title, need] of ROUTES) {
    const a = pattern.split('/');
    const b = path.split('/');
    if (a.length !== b.length) continue;
    const params = {};
    if (a.every((seg, i) => (seg.startsWith(':') ? ((params[seg.slice(1)] = decodeURIComponent(b[i])), true) : seg === b[i]))) {
      return { page, title, need, params };
    }
  }
  return null;
}

// ---------- layout ----------
let shell = null;
let renderSeq = 0;

function buildShell() {
  const navList = h('ul', { class: 'nav-list' });
  const nav = h('nav', { id: 'nav', class: 'nav', 'aria-label': 'Main' }, navList);
  const toggle = h('button', { type: 'button', class: 'btn-icon nav-toggle', 'aria-controls': 'nav', 'aria-expanded': 'false', 'aria-label': 'Menu' }, '☰');
  toggle.addEventListener('click', () => {
    const open = document.body.classList.toggle('nav-open');
    toggle.setAttribute('aria-expanded', String(open));
  });
  const who = h('span', { class: 'who' });
  const menu = h('details', { class: 'account' },
    h('summary', { class: 'btn btn-sm account-summary', title: 'Account menu' }, who),
    h('div', { class: 'account-menu' },
      button('Profile', () => { menu.open = false; editProfile(); }, { small: true }),
      button('Change password', () => { menu.open = false; changePassword(); }, { small: true }),
      button('Sign out', signOut, { small: true, 'data-testid': 'sign-out' })));
  document.addEventListener('click', (ev) => { if (menu.open && !menu.contains(ev.target)) menu.open = false; });
  menu.addEventListener('keydown', (ev) => { if (ev.key === 'Escape' && menu.open) { menu.open = false; menu.querySelector('summary').focus(); } });
  const main = h('main', { id: 'main', class: 'main', tabindex: '-1' });
  const header = h('header', { class: 'topbar' },
    toggle,
    h('a', { href: ROOT + '/', class: 'brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }, '◆'), 'copilot', h('span', { class: 'brand-sub' }, 'admin')),
    menu);
  const app = document.getElementById('app');
  replace(app, h('a', { class: 'skip', href: '#main' }, 'Skip to content'), header, h('div', { class: 'layout' }, nav, main));
  shell = { navList, main, who };
}

function fillShell() {
  const me = ctx.me;
  replace(shell.who, h('span', { class: 'who-name' }, me.username), ' ',
    h('span', { class: 'muted who-role' }, me.is_superuser ? 'superuser' : (me.role ? me.role.name : 'no role')), h('span', { 'aria-hidden': 'true', class: 'caret' }, ' ▾'));
  replace(shell.navList, NAV.filter((n) => !n.need || ctx.can(n.need)).map((n) => h('li', null, h('a', { href: ROOT + (n.path === '/' ? '/' : n.path), 'data-nav': n.path }, n.label))));
}

function markNav(path) {
  for (const a of shell.navList.querySelectorAll('a')) {
    const p = a.dataset.nav;
    const active = p === '/' ? path === '/' : path === p || path.startsWith(p + '/');
    if (active) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
}

async function signOut() {
  await logout();
  ctx.me = null;
  shell = null;
  notify('Signed out.');
  navigate('/login', { replace: true });
}

function editProfile() {
  const me = ctx.me;
  formDialog({
    title: 'Your profile',
    intro: `Signed in as ${me.username}.`,
    fields: [
      { name: 'email', label: 'E-mail', type: 'email', required: true, value: me.email },
      { name: 'full_name', label: 'Full name', value: me.full_name || '' },
    ],
    onSubmit: (v) => api('PUT', `/users/${me.id}`, { body: { email: v.email.trim(), full_name: v.full_name.trim() || null } }),
  }).then((u) => {
    if (!u) return;
    Object.assign(ctx.me, { email: u.email, full_name: u.full_name });
    fillShell();
    markNav(routePath());
    notify('Profile saved.');
  });
}

function changePassword() {
  formDialog({
    title: 'Change your password',
    intro: 'Your other sessions will be signed out.',
    submitLabel: 'Change password',
    fields: [
      { name: 'current_password', label: 'Current password', type: 'password', required: true, autocomplete: 'current-password' },
      { name: 'new_password', label: 'New password', type: 'password', required: true, help: '8 to 128 characters.' },
    ],
    onSubmit: (v) => api('POST', '/auth/change-password', { body: v }),
  }).then((r) => { if (r) notify('Password changed.'); });
}

// ---------- rendering ----------
async function render() {
  const seq = ++renderSeq;
  const path = routePath();
  document.body.classList.remove('nav-open');

  if (path === '/login') {
    shell = null;
    ctx.me = null;
    document.title = 'Sign in — copilot';
    const next = safeNext(new URLSearchParams(location.search).get('next'));
    if (hasSession()) { navigate(next, { replace: true }); return; }
    loginPage(document.getElementById('app'), { next, onSignedIn: () => navigate(next, { replace: true }) });
    return;
  }
  if (!hasSession()) {
    navigate(path === '/' ? '/login' : '/login?next=' + encodeURIComponent(location.pathname + location.search), { replace: true });
    return;
  }
  if (!ctx.me || !shell) {
    if (!shell) buildShell();
    replace(shell.main, h('p', { class: 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Loading…'));
    try {
      ctx.me = await api('GET', '/auth/me');
    } catch (e) {
      if (seq !== renderSeq) return;
      if (!hasSession()) return; // expired: the listener redirects
      replace(shell.main, h('div', { class: 'alert', role: 'alert' }, 'Could not load your account: ', e.detail || String(e), ' ', button('Retry', render, { small: true })));
      return;
    }
    if (seq !== renderSeq) return;
    fillShell();
  }
  markNav(path);
  const m = match(path);
  const main = shell.main;
  replace(main);
  if (!m) {
    document.title = 'Not found — copilot';
    replace(main, h('h1', { tabindex: '-1' }, 'Page not found'), h('p', null, 'There is no page at this address. ', h('a', { href: ROOT + '/' }, 'Go to the dashboard')));
    return;
  }
  document.title = `${m.title} — copilot`;
  if (m.need && !ctx.can(m.need)) {
    replace(main, h('h1', { tabindex: '-1' }, m.title), h('div', { class: 'alert' }, m.need === ORG_ADMIN ? 'This page is for organization admins.' : `Your role does not include ${m.need}, which this page needs.`));
    return;
  }
  try {
    await m.page(main, m.params, ctx);
  } catch (e) {
    if (seq === renderSeq && hasSession()) replace(main, h('h1', { tabindex: '-1' }, m.title), h('div', { class: 'alert', role: 'alert' }, e.detail || String(e)));
  }
  if (seq === renderSeq && focusOnRender) {
    const h1 = main.querySelector('h1');
    if (h1) h1.focus({ preventScroll: true });
  }
  focusOnRender = true;
}
let focusOnRender = false;

function safeNext(n) {
  if (!n || !n.startsWith(ROOT + '/') || n.startsWith(ROOT + '/login')) return '/';
  return n;
}

// ---------- wiring ----------
document.addEventListener('click', (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = ev.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(ROOT + '/')) return;
  if (url.hash && url.pathname === location.pathname) return;
  ev.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener('popstate', () => { focusOnRender = true; render(); });

onExpired((message) => {
  ctx.me = null;
  shell = null;
  const here = location.pathname + location.search;
  navigate('/login?next=' + encodeURIComponent(here), { replace: true });
  setTimeout(() => notify(message, 'error'), 0);
});

const bar = document.getElementById('busy');
let busyTimer;
onBusy((on) => {
  clearTimeout(busyTimer);
  if (on) busyTimer = setTimeout(() => bar && bar.classList.add('on'), 200);
  else if (bar) bar.classList.remove('on');
});

render();
