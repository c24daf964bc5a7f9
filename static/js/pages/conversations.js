import { h, replace, fmtDate, fmtDay, nextId } from '../dom.js';
import { api, listAll } from '../api.js';
import { pageHeader, listView, formDialog, confirmAction, button, badge, notify, act, errText } from '../ui.js';

async function lookups(ctx) {
  const [agents, projects] = await Promise.all([
    ctx.can('agents:read') ? listAll('/agent-configs').catch(() => []) : [],
    ctx.can('projects:read') ? listAll('/projects').catch(() => []) : [],
  ]);
  return { agents, projects };
}

export async function conversationsPage(main, _params, ctx) {
  const { agents, projects } = await lookups(ctx);
  const agentName = (id) => (id ? (agents.find((a) => a.id === id) || { name: '(agent)' }).name : '—');

  async function create() {
    const fields = [{ name: 'title', label: 'Title', placeholder: 'What is it about?' }];
    if (ctx.can('agents:read')) fields.push({ name: 'agent_config_id', label: 'Agent', type: 'select', options: [['', '(no agent)'], ...agents.map((a) => [a.id, `${a.name} (${a.agent_type})`])], help: agents.length ? null : 'No active agent configs yet.' });
    if (projects.length) fields.push({ name: 'project_id', label: 'Project', type: 'select', options: [['', '(none)'], ...projects.map((p) => [p.id, p.name])] });
    const c = await formDialog({
      title: 'New conversation', submitLabel: 'Start conversation', fields,
      onSubmit: (v) => {
        const body = {};
        if (v.title && v.title.trim()) body.title = v.title.trim();
        if (v.agent_config_id) body.agent_config_id = v.agent_config_id;
        if (v.project_id) body.project_id = v.project_id;
        return api('POST', '/conversations', { body });
      },
    });
    if (c) ctx.navigate(`/conversations/${c.id}`);
  }

  const columns = [
    { label: 'Title', cell: (c) => h('a', { class: 'cell-main', href: `/admin/conversations/${c.id}` }, c.title || 'Untitled conversation') },
    { label: 'Agent', cell: (c) => agentName(c.agent_config_id) },
    { label: 'Messages', cell: (c) => String(c.message_count) },
    { label: 'Status', cell: (c) => (c.is_archived ? badge('archived', 'muted') : badge('open', 'ok')) },
    { label: 'Updated', cell: (c) => fmtDate(c.updated_at) },
  ];
  const filters = [{ name: 'is_archived', label: 'Show', default: 'false', options: [['false', 'Open'], ['true', 'Archived'], ['', 'All']] }];
  if (agents.length) filters.push({ name: 'agent_config_id', label: 'Agent', options: [['', 'Any agent'], ...agents.map((a) => [a.id, a.name])] });
  if (projects.length) filters.push({ name: 'project_id', label: 'Project', options: [['', 'Any project'], ...projects.map((p) => [p.id, p.name])] });
  const list = listView({ path: '/conversations', label: 'My conversations', columns, filters, searchLabel: 'Search by title', searchPlaceholder: 'Title', empty: 'No conversations yet — start one.' });
  replace(main,
    pageHeader('My conversations', button('New conversation', create, { kind: 'primary', 'data-testid': 'new-conversation' })),
    h('p', { class: 'muted' }, 'Only you can see your conversations.'),
    list.el);
  if (new URLSearchParams(location.search).get('new') === '1') {
    history.replaceState(null, '', location.pathname);
    create();
  }
}

export async function conversationPage(main, { id }, ctx) {
  const conv = await api('GET', `/conversations/${encodeURIComponent(id)}`);
  const agent = conv.agent_config_id && ctx.can('agents:read') ? await api('GET', `/agent-configs/${conv.agent_config_id}`).catch(() => null) : null;
  const title = h('h1', { tabindex: '-1' }, conv.title || 'Untitled conversation');
  const meta = h('p', { class: 'muted small' });
  const fillMeta = () => replace(meta,
    agent ? `Agent: ${agent.name} (${agent.agent_type}, ${agent.llm_model}) · ` : 'No agent · ',
    `started ${fmtDay(conv.created_at)} · `, `${conv.messages.length} message${conv.messages.length === 1 ? '' : 's'}`,
    conv.is_archived ? [' · ', badge('archived', 'muted')] : null);
  fillMeta();

  const transcript = h('ol', { class: 'transcript', 'aria-label': 'Messages', 'data-testid': 'transcript' });
  const bubble = (m) => h('li', { class: ['msg', `msg-${m.role}`] },
    h('div', { class: 'msg-head' }, h('strong', null, m.role === 'user' ? 'You' : (agent ? agent.name : 'Assistant')), ' ', h('time', { datetime: m.created_at, class: 'muted small' }, fmtDate(m.created_at))),
    h('div', { class: 'msg-body' }, m.content));
  const drawTranscript = () => replace(transcript, conv.messages.length ? conv.messages.map(bubble) : h('li', { class: 'empty' }, 'No messages yet. Write the first one below.'));
  drawTranscript();

  // composer
  const taId = nextId('msg');
  const roleId = nextId('role');
  const text = h('textarea', { id: taId, rows: 3, maxlength: 100000, placeholder: 'Write a message… (Ctrl+Enter sends)', required: true });
  const role = h('select', { id: roleId }, h('option', { value: 'user' }, 'as user'), h('option', { value: 'assistant' }, 'as assistant'));
  const send = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Send');
  const err = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const composer = h('form', { class: 'composer', novalidate: true },
    err,
    h('label', { for: taId, class: 'sr-only' }, 'Message'),
    text,
    h('div', { class: 'composer-bar' }, h('label', { for: roleId, class: 'small muted' }, 'Post '), role, send));
  text.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); composer.requestSubmit(); } });
  composer.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.hidden = true;
    if (!text.value.trim()) { replace(err, 'Write something first.'); err.hidden = false; text.focus(); return; }
    send.disabled = true;
    send.textContent = 'Sending…';
    try {
      const m = await api('POST', `/conversations/${conv.id}/messages`, { body: { role: role.value, content: text.value } });
      conv.messages.push(m);
      drawTranscript();
      fillMeta();
      text.value = '';
      transcript.lastElementChild.scrollIntoView({ block: 'nearest' });
    } catch (e) {
      replace(err, errText(e));
      err.hidden = false;
    } finally {
      send.disabled = false;
      send.textContent = 'Send';
      text.focus();
    }
  });

  const archiveBtn = button(conv.is_archived ? 'Unarchive' : 'Archive', async (ev) => {
    const r = await act(ev.currentTarget, () => api('PUT', `/conversations/${conv.id}`, { body: { is_archived: !conv.is_archived } }), conv.is_archived ? 'Conversation reopened.' : 'Conversation archived.');
    if (r) { conv.is_archived = r.is_archived; replace(archiveBtn, r.is_archived ? 'Unarchive' : 'Archive'); fillMeta(); }
  });
  const actions = [
    button('Rename', async () => {
      const r = await formDialog({
        title: 'Rename conversation', submitLabel: 'Rename',
        fields: [{ name: 'title', label: 'Title', value: conv.title || '' }],
        onSubmit: (v) => api('PUT', `/conversations/${conv.id}`, { body: { title: v.title.trim() || null } }),
      });
      if (r) { conv.title = r.title; replace(title, r.title || 'Untitled conversation'); document.title = `${r.title || 'Conversation'} — copilot`; notify('Renamed.'); }
    }),
    archiveBtn,
    button('Delete', async (ev) => {
      if (!(await confirmAction('Delete this conversation and all its messages? This cannot be undone.', { confirmLabel: 'Delete conversation' }))) return;
      if (await act(ev.currentTarget, () => api('DELETE', `/conversations/${conv.id}`).then(() => true), 'Conversation deleted.')) ctx.navigate('/conversations');
    }, { kind: 'danger' }),
  ];
  document.title = `${conv.title || 'Conversation'} — copilot`;
  replace(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/admin/conversations' }, 'My conversations'), ' / '),
    h('div', { class: 'page-head' }, title, h('div', { class: 'page-actions' }, actions)),
    meta,
    h('section', { class: 'chat' }, transcript, composer));
}
