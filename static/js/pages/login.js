import { h, replace, nextId } from '../dom.js';
import { login, api, ApiError } from '../api.js';

export function loginPage(root, { next, onSignedIn }) {
  const uid = nextId('login-user');
  const pid = nextId('login-pass');
  const user = h('input', { id: uid, name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const pass = h('input', { id: pid, name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const error = h('div', { class: 'form-error', role: 'alert', hidden: true, 'data-testid': 'login-error' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block' }, 'Sign in');
  const status = h('p', { class: 'login-status muted' });
  const form = h('form', { class: 'form login-form', novalidate: true },
    h('h1', null, 'Sign in'),
    next && next !== '/' && next !== '/admin/' ? h('p', { class: 'muted' }, 'Sign in to continue to the page you asked for.') : null,
    error,
    h('div', { class: 'field' }, h('label', { for: uid }, 'Username or e-mail'), user),
    h('div', { class: 'field' }, h('label', { for: pid }, 'Password'), pass),
    submit);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    if (!user.value.trim() || !pass.value) {
      replace(error, 'Enter your username (or e-mail) and your password.');
      error.hidden = false;
      (user.value.trim() ? pass : user).focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    form.setAttribute('aria-busy', 'true');
    try {
      await login(user.value.trim(), pass.value);
      onSignedIn();
    } catch (e) {
      const detail = e instanceof ApiError ? e.detail : String(e);
      replace(error, detail);
      error.hidden = false;
      pass.value = '';
      pass.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = 'Sign in';
      form.removeAttribute('aria-busy');
    }
  });

  replace(root, h('div', { class: 'login-page' },
    h('main', { class: 'login-card', id: 'main' },
      h('div', { class: 'brand brand-login' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }, '◆'), 'copilot', h('span', { class: 'brand-sub' }, 'admin')),
      form,
      status,
      h('p', { class: 'muted small' }, 'First start? The superuser\'s password was printed in the terminal where the server started. API reference: ', h('a', { href: '/docs' }, '/docs'), '.'))));
  user.focus();
  api('GET', '/status').then((s) => replace(status, `Server ${s.status} · version ${s.version}`), () => replace(status, 'The server does not answer.'));
}
