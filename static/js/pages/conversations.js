import { h, replace, fmtDate, fmtDay, nextId } from '../dom.js';
import { api, apiStream, readEvents, listAll } from '../api.js';
import { pageHeader, listView, formDialog, confirmAction, button, badge, notify, act, errText, showDialog, fmtScore } from '../ui.js';

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

// ---------- one conversation ----------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** How an assistant reply ended, from its metadata: null (completed or posted by hand), or a mark. */
function replyMark(md) {
  if (md.status === 'cancelled') return { label: 'cancelled', kind: 'muted', cls: 'msg-cancelled' };
  if (md.status === 'failed') return { label: md.partial ? 'failed · partial' : 'failed', kind: 'danger', cls: 'msg-failed' };
  if (md.partial) return { label: 'partial', kind: 'danger', cls: 'msg-failed' };
  return null;
}

function fmtLatency(ms) {
  if (typeof ms !== 'number') return null;
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** The usage line of a generated reply: model, tokens, latency (nothing for hand-posted ones). */
function usageLine(md) {
  const tokens = typeof md.prompt_tokens === 'number' || typeof md.completion_tokens === 'number';
  if (!md.model && !tokens) return null;
  const parts = [];
  if (md.model) parts.push(h('span', { title: md.provider ? `model (provider ${md.provider})` : 'model' }, String(md.model)));
  if (tokens) {
    parts.push(h('span', { title: md.usage_estimated ? 'estimated: the provider did not report usage' : 'as reported by the provider' },
      `${md.prompt_tokens ?? '?'} prompt + ${md.completion_tokens ?? '?'} completion tokens${md.usage_estimated ? ' (estimated)' : ''}`));
  }
  const latency = fmtLatency(md.latency_ms);
  if (latency) parts.push(h('span', { title: 'time to generate' }, latency));
  return h('div', { class: 'msg-usage muted small', 'data-testid': 'usage' }, parts.flatMap((p, i) => (i ? [' · ', p] : [p])));
}

/** A cited passage in a dialog: its snippet, document, page and heading, and a link to the document. */
function openSource(c, n, ctx) {
  const heading = h('dd', null, '…');
  const canRead = ctx.can('agents:read');
  const link = canRead ? h('a', { href: `/admin/documents/${encodeURIComponent(c.document_id)}` }, 'Open the document') : null;
  const body = [
    h('dl', { class: 'kv' },
      h('dt', null, 'Document'), h('dd', null, String(c.document_title || 'Untitled document')),
      h('dt', null, 'Page'), h('dd', null, c.page ? String(c.page) : '—'),
      h('dt', null, 'Heading'), heading,
      typeof c.score === 'number' ? [h('dt', null, 'Score'), h('dd', null, fmtScore(c.score))] : null),
    h('blockquote', { class: 'source-snippet', 'data-testid': 'source-snippet' }, String(c.snippet || '')),
    link ? h('p', null, link) : null,
  ];
  showDialog(`Source ${n}`, body, { wide: true });
  if (link) link.addEventListener('click', () => { const d = link.closest('dialog'); if (d) d.close(); });
  // the heading is not part of the citation: it is read from the document's chunks
  if (!canRead || !c.chunk_id) { replace(heading, '—'); return; }
  listAll(`/documents/${encodeURIComponent(c.document_id)}/chunks`).then((chunks) => {
    const chunk = chunks.find((x) => x.id === c.chunk_id);
    replace(heading, chunk && chunk.heading ? chunk.heading : '—');
  }, () => replace(heading, '—'));
}

/** The "Sources" under an assistant reply: one button per citation, opening its passage. */
function sourcesList(citations, ctx) {
  if (!Array.isArray(citations) || !citations.length) return null;
  const labelId = nextId('src');
  return h('div', { class: 'msg-sources', 'data-testid': 'sources' },
    h('div', { class: 'msg-sources-label small muted', id: labelId }, 'Sources'),
    h('ol', { class: 'msg-sources-list', 'aria-labelledby': labelId },
      citations.map((c, i) => h('li', null,
        button([`[${i + 1}] `, String(c.document_title || 'Untitled document'), c.page ? `, page ${c.page}` : ''],
          () => openSource(c, i + 1, ctx), { small: true, class: 'btn btn-sm btn-source' })))));
}

export async function conversationPage(main, { id }, ctx) {
  const conv = await api('GET', `/conversations/${encodeURIComponent(id)}`);
  const agent = conv.agent_config_id && ctx.can('agents:read') ? await api('GET', `/agent-configs/${conv.agent_config_id}`).catch(() => null) : null;
  // a conversation with an agent config asks it for replies (streamed); without, messages are posted by hand
  const hasAgent = !!conv.agent_config_id;
  const botName = agent ? agent.name : 'Assistant';
  const title = h('h1', { tabindex: '-1' }, conv.title || 'Untitled conversation');
  const meta = h('p', { class: 'muted small' });
  const fillMeta = () => replace(meta,
    agent ? `Agent: ${agent.name} (${agent.agent_type}, ${agent.llm_model}) · ` : (hasAgent ? 'Agent · ' : 'No agent · '),
    `started ${fmtDay(conv.created_at)} · `, `${conv.messages.length} message${conv.messages.length === 1 ? '' : 's'}`,
    conv.is_archived ? [' · ', badge('archived', 'muted')] : null);
  fillMeta();

  // the transcript: stored messages, notes that are only shown here (errors), and the reply being written
  const items = conv.messages.map((m) => ({ message: m }));
  let live = null;
  const transcript = h('ol', { class: 'transcript', 'aria-label': 'Messages', 'data-testid': 'transcript' });
  const bubble = (m) => {
    const md = (m.metadata && typeof m.metadata === 'object') ? m.metadata : {};
    const mark = m.role === 'assistant' ? replyMark(md) : null;
    return h('li', { class: ['msg', `msg-${m.role}`, mark && mark.cls], 'data-status': mark ? md.status || 'partial' : null },
      h('div', { class: 'msg-head' },
        h('strong', null, m.role === 'user' ? 'You' : botName), ' ',
        h('time', { datetime: m.created_at, class: 'muted small' }, fmtDate(m.created_at)),
        mark ? [' ', badge(mark.label, mark.kind)] : null),
      h('div', { class: 'msg-body' }, m.content),
      m.role === 'assistant' ? sourcesList(md.citations, ctx) : null,
      mark && md.error ? h('div', { class: 'msg-error small' }, md.status === 'cancelled' ? 'Stopped: ' : 'Failed: ', String(md.error)) : null,
      m.role === 'assistant' ? usageLine(md) : null);
  };
  const noteEl = (n) => h('li', { class: ['msg-note', `msg-note-${n.kind}`], role: n.kind === 'error' ? 'alert' : null, 'data-testid': 'transcript-note' }, n.note);
  const atEnd = () => transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 48;
  const toEnd = () => { transcript.scrollTop = transcript.scrollHeight; };
  const drawTranscript = () => {
    const stick = atEnd();
    replace(transcript, items.length || live
      ? [items.map((it) => (it.message ? bubble(it.message) : noteEl(it))), live && live.el]
      : h('li', { class: 'empty' }, hasAgent ? 'No messages yet. Ask the agent something below.' : 'No messages yet. Write the first one below.'));
    if (stick) toEnd();
  };
  const addMessage = (m) => {
    if (conv.messages.some((x) => x.id === m.id)) return;
    conv.messages.push(m);
    items.push({ message: m });
    drawTranscript();
    fillMeta();
  };
  const addNote = (note, kind = 'info') => { items.push({ note, kind }); drawTranscript(); };
  drawTranscript();

  // composer
  const taId = nextId('msg');
  const roleId = nextId('role');
  const text = h('textarea', { id: taId, rows: 3, maxlength: 100000, placeholder: 'Write a message… (Ctrl+Enter sends)', required: true });
  const role = h('select', { id: roleId },
    hasAgent ? h('option', { value: 'agent' }, 'to the agent') : null,
    h('option', { value: 'user' }, hasAgent ? 'as user, no reply' : 'as user'),
    h('option', { value: 'assistant' }, 'as assistant'));
  const send = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Send');
  const stopBtn = h('button', { type: 'button', class: 'btn btn-danger', hidden: true, 'aria-label': 'Stop the reply' }, 'Stop');
  const status = h('div', { class: 'chat-status small muted', role: 'status', 'aria-live': 'polite', 'data-testid': 'chat-status' });
  const err = h('div', { class: 'form-error', role: 'alert', hidden: true, 'data-testid': 'composer-error' });
  const composer = h('form', { class: 'composer', novalidate: true },
    err,
    h('label', { for: taId, class: 'sr-only' }, 'Message'),
    text,
    h('div', { class: 'composer-bar' }, status, h('label', { for: roleId, class: 'small muted' }, 'Post '), role, stopBtn, send));
  const chat = h('section', { class: 'chat' }, transcript, composer);
  const showError = (msg) => { replace(err, msg); err.hidden = false; };
  const setStatus = (msg, spinning = true) => replace(status, msg ? [spinning ? h('span', { class: 'spinner', 'aria-hidden': 'true' }) : null, ' ', msg] : null);

  // ---- streamed replies ----
  let job = null; // {id, lastId, stop, ended, ctrl}
  function setStreaming(on) {
    send.disabled = on;
    stopBtn.hidden = !on;
    stopBtn.disabled = false;
    if (on) chat.setAttribute('aria-busy', 'true'); else chat.removeAttribute('aria-busy');
    if (!on) setStatus(null);
  }
  function ensureLive() {
    if (live) return;
    const body = h('div', { class: 'msg-body' });
    const sources = h('div');
    const el = h('li', { class: 'msg msg-assistant msg-streaming', 'aria-busy': 'true', 'data-testid': 'streaming-reply' },
      h('div', { class: 'msg-head' }, h('strong', null, botName), ' ',
        h('span', { class: 'muted small' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' writing…')),
      body, sources);
    live = { el, body, sources };
    drawTranscript();
  }
  function dropLive() {
    if (!live) return;
    live = null;
    drawTranscript();
  }
  const gone = () => !chat.isConnected;

  function onEvent(state, e) {
    if (gone()) { state.ctrl.abort(); return; }
    const n = Number(e.id);
    if (Number.isFinite(n) && e.id !== null) {
      if (n <= state.lastId) return; // already seen (a replay after re-attaching)
      state.lastId = n;
    }
    state.tries = 0;
    const d = e.data && typeof e.data === 'object' ? e.data : {};
    if (e.event === 'user_message') {
      state.id = d.job_id || state.id;
      if (d.message) addMessage(d.message);
      if (state.sent !== undefined && text.value === state.sent) text.value = '';
      ensureLive();
      setStatus(`${botName} is writing…`);
      if (state.stop) cancel(state);
    } else if (e.event === 'citations') {
      ensureLive();
      replace(live.sources, sourcesList(d.citations, ctx));
    } else if (e.event === 'delta') {
      ensureLive();
      const stick = atEnd();
      live.body.append(typeof d.content === 'string' ? d.content : '');
      if (stick) toEnd();
    } else if (e.event === 'done' || e.event === 'cancelled' || e.event === 'error') {
      state.ended = true;
      live = null;
      if (job === state) { job = null; setStreaming(false); } // the stream ends right after
      if (d.message) addMessage(d.message);
      else drawTranscript();
      if (e.event === 'error' && !d.message) addNote(`The reply failed: ${d.detail || 'unknown error'}`, 'error');
      if (e.event === 'cancelled' && !d.message) addNote('The reply was stopped before any text was written.');
    }
  }

  /** Reads the job's events from `res` (or re-attaches), re-attaching when the connection breaks. */
  async function follow(state, res, { quiet = false } = {}) {
    state.tries = 0;
    for (;;) {
      try {
        if (!res) {
          res = await apiStream('GET', `/conversations/${conv.id}/completions/${encodeURIComponent(state.id)}`,
            { headers: { 'last-event-id': String(state.lastId) }, signal: state.ctrl.signal });
        }
        await readEvents(res, (e) => onEvent(state, e));
      } catch (e) {
        if (state.ctrl.signal.aborted || gone()) return;
        if (e && e.status >= 400 && e.status < 500) { // not found, not allowed, session over: no retry
          if (!quiet && e.status !== 401) addNote(`Could not follow the reply: ${errText(e)}`, 'error');
          break;
        }
      }
      res = null;
      if (state.ended || gone()) break;
      if (!state.id) { addNote('The connection broke before the message was confirmed. Reload the page to see what was stored.', 'error'); break; }
      if (++state.tries > 6) { addNote('Lost the connection to the reply. Reload the page to see it.', 'error'); break; }
      setStatus('Connection lost — reconnecting…');
      await sleep(Math.min(8000, 400 * 2 ** (state.tries - 1)));
      if (gone()) return;
      setStatus(state.stop ? 'Stopping…' : `${botName} is writing…`);
    }
    if (!state.ended) dropLive();
  }

  async function cancel(state) {
    if (!state.id) return; // asked again once the job id is known
    try {
      await api('POST', `/conversations/${conv.id}/completions/${encodeURIComponent(state.id)}/cancel`);
    } catch (e) {
      if (e.status !== 409) { showError(`Could not stop the reply: ${errText(e)}`); stopBtn.disabled = false; state.stop = false; }
    }
  }

  async function run(state, start, opts) {
    job = state;
    setStreaming(true);
    try {
      const res = await start();
      if (res === null) return;
      await follow(state, res, opts);
    } finally {
      if (job === state) { job = null; setStreaming(false); }
      if (live && !state.ended) dropLive();
    }
  }

  async function ask(content) {
    const state = { id: null, lastId: 0, stop: false, ended: false, sent: content, ctrl: new AbortController() };
    setStatus('Sending…');
    let conflict = false;
    await run(state, async () => {
      try {
        return await apiStream('POST', `/conversations/${conv.id}/completions`, { body: { content, stream: true }, signal: state.ctrl.signal });
      } catch (e) {
        if (e.status === 503) showError(`The agent cannot answer: ${errText(e)}`);
        else if (e.status === 409) { showError(`${errText(e)}.`); conflict = true; }
        else showError(errText(e));
        return null;
      }
    });
    if (conflict) resume({ reload: true });
  }

  /** Follows a reply that is still being written (after a reload, or a 409). */
  async function resume({ reload = false } = {}) {
    if (!hasAgent || job) return;
    if (reload) {
      try {
        const fresh = await api('GET', `/conversations/${conv.id}`);
        for (const m of fresh.messages) addMessage(m);
      } catch { return; }
    }
    const last = conv.messages[conv.messages.length - 1];
    const jobId = last && last.role === 'user' && last.metadata && last.metadata.job_id;
    if (!jobId) return;
    const state = { id: jobId, lastId: 1, stop: false, ended: false, ctrl: new AbortController() };
    setStatus(`${botName} is writing…`);
    await run(state, async () => undefined, { quiet: true });
  }

  stopBtn.addEventListener('click', () => {
    if (!job || job.stop) return;
    job.stop = true;
    stopBtn.disabled = true;
    setStatus('Stopping…');
    cancel(job);
  });
  text.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); composer.requestSubmit(); } });
  composer.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.hidden = true;
    if (job) return;
    if (!text.value.trim()) { showError('Write something first.'); text.focus(); return; }
    if (role.value === 'agent') {
      const fromButton = document.activeElement === send;
      const ask_ = ask(text.value);
      if (fromButton && !stopBtn.hidden) stopBtn.focus();
      await ask_;
      if (gone()) return;
      if (fromButton || document.activeElement === document.body) text.focus();
      return;
    }
    send.disabled = true;
    send.textContent = 'Sending…';
    try {
      const m = await api('POST', `/conversations/${conv.id}/messages`, { body: { role: role.value, content: text.value } });
      addMessage(m);
      text.value = '';
      toEnd();
    } catch (e) {
      showError(errText(e));
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
    chat);
  toEnd();
  resume(); // a reply still being written (e.g. after a reload) is picked up where it is
}
