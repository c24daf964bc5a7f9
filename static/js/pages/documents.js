// The knowledge base: documents (upload, list, detail, chunks) and a retrieval test.
import { h, replace, append, fmtDate, fmtBytes, nextId } from '../dom.js';
import { api, apiUpload, apiBlob, listAll } from '../api.js';
import { pageHeader, listView, confirmAction, button, badge, act, errText, highlight, fmtScore } from '../ui.js';

const POLL_MS = 1500;
const UPLOADS_AT_ONCE = 3;
const BUSY = new Set(['pending', 'processing']);
const STATUS_KIND = { ready: 'ok', failed: 'danger', pending: 'muted', processing: 'accent' };
export const statusBadge = (s) => badge(s, STATUS_KIND[s] || '');
const TYPE_LABEL = {
  'text/plain': 'Text', 'text/markdown': 'Markdown', 'text/html': 'HTML', 'application/pdf': 'PDF',
  'application/vnd.openxmlformats-officedocument.wordprocessingml.document': 'DOCX',
};
const typeLabel = (t) => TYPE_LABEL[t] || t;
const ACCEPT = '.txt,.md,.markdown,.html,.htm,.pdf,.docx,text/plain,text/markdown,text/html,application/pdf,application/vnd.openxmlformats-officedocument.wordprocessingml.document';

async function projectsOf(ctx) {
  return ctx.can('projects:read') ? listAll('/projects').catch(() => []) : [];
}

export async function documentsPage(main, _params, ctx) {
  const canWrite = ctx.can('agents:write');
  const projects = await projectsOf(ctx);
  const projectName = (id) => (id ? (projects.find((p) => p.id === id) || { name: '(project)' }).name : '—');
  const projectOptions = (none) => [['', none], ...projects.map((p) => [p.id, p.name])];
  const selectOf = (id, options) => h('select', { id }, options.map(([v, l]) => h('option', { value: v }, l)));

  // ---- the list, polled while a document is being ingested ----
  let pollTimer = null;
  const columns = [
    { label: 'Title', cell: (d) => h('a', { class: 'cell-main', href: `/admin/documents/${d.id}` }, d.title) },
    { label: 'Filename', class: 'break', cell: (d) => d.filename },
    { label: 'Type', cell: (d) => typeLabel(d.content_type) },
    { label: 'Size', class: 'nowrap', cell: (d) => fmtBytes(d.size_bytes) },
    { label: 'Status', cell: (d) => h('div', null, h('span', { 'data-testid': 'doc-status' }, statusBadge(d.status)),
      d.status === 'failed' && d.error ? h('div', { class: 'small doc-error' }, d.error) : null) },
    { label: 'Chunks', cell: (d) => String(d.chunk_count) },
    { label: 'Created', class: 'nowrap', cell: (d) => fmtDate(d.created_at) },
  ];
  const filters = [{ name: 'status', label: 'Status', options: [['', 'Any status'], ['pending', 'pending'], ['processing', 'processing'], ['ready', 'ready'], ['failed', 'failed']] }];
  if (projects.length) {
    columns.splice(4, 0, { label: 'Project', cell: (d) => projectName(d.project_id) });
    filters.push({ name: 'project_id', label: 'Project', options: projectOptions('Any project') });
  }
  const list = listView({
    path: '/documents', label: 'Documents', columns, filters, searchLabel: 'Search documents', searchPlaceholder: 'Title or filename',
    empty: canWrite ? 'No documents yet — upload some above.' : 'No documents yet.',
    onLoad(page) {
      clearTimeout(pollTimer);
      if (page.data.some((d) => BUSY.has(d.status))) {
        pollTimer = setTimeout(() => { if (list.el.isConnected) list.reload(); }, POLL_MS);
      }
    },
  });

  // ---- upload ----
  let upload = null;
  if (canWrite) {
    const inputId = nextId('files');
    const hintId = nextId('hint');
    const input = h('input', { type: 'file', id: inputId, multiple: true, accept: ACCEPT, class: 'sr-only', 'aria-describedby': hintId, 'data-testid': 'file-input' });
    const zone = h('label', { for: inputId, class: 'dropzone', 'data-testid': 'dropzone' },
      h('span', { class: 'dropzone-title' }, 'Drop files here or choose files'),
      h('span', { class: 'muted small', id: hintId }, 'Text, Markdown, HTML, PDF (with a text layer) or DOCX. Several at once.'));
    const projId = nextId('proj');
    const proj = projects.length ? selectOf(projId, projectOptions('(no project)')) : null;
    const results = h('ul', { class: 'uploads', 'aria-label': 'Uploads', 'data-testid': 'uploads' });
    // every file gets its row at once; at most UPLOADS_AT_ONCE are sent at the same time
    const start = async (files) => {
      files = [...files];
      if (!files.length) return;
      const projectId = proj ? proj.value : '';
      const jobs = files.map((f) => prepare(f, projectId));
      results.prepend(...jobs.map((j) => j.item));
      let next = 0;
      const worker = async () => { while (next < jobs.length) await jobs[next++].run(); };
      await Promise.all(Array.from({ length: Math.min(UPLOADS_AT_ONCE, jobs.length) }, worker));
      if (list.el.isConnected) list.reload();
    };
    const prepare = (file, projectId) => {
      const bar = h('progress', { max: 100, value: 0, 'aria-label': `Upload progress of ${file.name}` });
      const result = h('span', { class: 'upload-result small', role: 'status' }, 'Waiting…');
      const item = h('li', { class: 'upload', 'data-testid': 'upload', 'data-state': 'waiting' },
        h('span', { class: 'upload-name' }, file.name), h('span', { class: 'muted small nowrap' }, fmtBytes(file.size)), bar, result);
      const run = async () => {
        item.dataset.state = 'uploading';
        replace(result, 'Uploading…');
        const form = new FormData();
        form.append('file', file, file.name);
        if (projectId) form.append('project_id', projectId);
        try {
          const doc = await apiUpload('/documents', form, { onProgress: (f) => { bar.value = Math.round(f * 100); } });
          bar.value = 100;
          item.dataset.state = 'ok';
          replace(result, 'Uploaded — ', h('a', { href: `/admin/documents/${doc.id}` }, doc.title), ' is being indexed.');
        } catch (e) {
          item.dataset.state = 'error';
          item.classList.add('upload-failed');
          bar.hidden = true; // no progress to show: the reason takes its place
          result.setAttribute('role', 'alert');
          replace(result, errText(e));
          // a duplicate: the detail ends with the existing document's id
          const existing = e.status === 409 && /([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\s*$/i.exec(errText(e));
          if (existing) append(result, [' ', h('a', { href: `/admin/documents/${existing[1]}` }, 'Open it')]);
        }
      };
      return { item, run };
    };
    input.addEventListener('change', () => { start(input.files); input.value = ''; });
    const headId = nextId('up');
    upload = h('section', { class: 'card', 'aria-labelledby': headId },
      h('h2', { id: headId }, 'Upload documents'),
      proj ? h('div', { class: 'filter upload-project' }, h('label', { for: projId }, 'Project (optional)'), proj) : null,
      input, zone,
      results);
    // the whole card takes a drop (a file dropped beside the zone would otherwise be opened by the browser)
    let depth = 0;
    const over = (on) => zone.classList.toggle('dropzone-over', on);
    upload.addEventListener('dragenter', (ev) => { ev.preventDefault(); depth++; over(true); });
    upload.addEventListener('dragover', (ev) => { ev.preventDefault(); if (ev.dataTransfer) ev.dataTransfer.dropEffect = 'copy'; });
    upload.addEventListener('dragleave', () => { if (--depth <= 0) { depth = 0; over(false); } });
    upload.addEventListener('drop', (ev) => {
      ev.preventDefault();
      depth = 0;
      over(false);
      if (ev.dataTransfer) start(ev.dataTransfer.files);
    });
  }

  replace(main,
    pageHeader('Documents'),
    h('p', { class: 'muted' }, 'The knowledge base: agents with it enabled answer from these documents and cite them.'),
    upload,
    retrievalCard(projects),
    h('h2', null, 'All documents'),
    list.el);
}

/** Test retrieval: what the knowledge base returns for a query, words highlighted. */
function retrievalCard(projects) {
  const qId = nextId('q');
  const pId = nextId('scope');
  const q = h('input', { type: 'search', id: qId, name: 'q', maxlength: 1000, required: true, autocomplete: 'off', placeholder: 'e.g. how is data encrypted?' });
  const proj = projects.length
    ? h('select', { id: pId }, [['', 'All documents'], ...projects.map((p) => [p.id, p.name])].map(([v, l]) => h('option', { value: v }, l)))
    : null;
  const go = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Search');
  const out = h('div', { class: 'passages-wrap', 'aria-live': 'polite', 'data-testid': 'retrieval-results' });
  const form = h('form', { class: 'toolbar retrieval-form', role: 'search', 'aria-label': 'Test retrieval' },
    h('div', { class: 'filter filter-search' }, h('label', { for: qId }, 'Query'), q),
    proj ? h('div', { class: 'filter' }, h('label', { for: pId }, 'Project'), proj) : null,
    go);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = q.value.trim();
    if (!text) { replace(out, h('p', { class: 'form-error', role: 'alert' }, 'Write a query first.')); q.focus(); return; }
    const page = await act(go, () => api('GET', '/knowledge/search', { query: { q: text, project_id: proj ? proj.value : '', limit: 10 } }));
    if (!page) return;
    replace(out, page.data.length
      ? h('ol', { class: 'passages', 'aria-label': `Passages for ${text}` }, page.data.map((p) => passageItem(p, text)))
      : h('p', { class: 'empty' }, 'No passage matches this query.'));
  });
  return h('section', { class: 'card' },
    h('h2', null, 'Test retrieval'),
    h('p', { class: 'muted small' }, 'The passages an agent would be given for this question, best first.'),
    form, out);
}

function passageItem(p, q) {
  return h('li', { class: 'passage', 'data-testid': 'passage' },
    h('div', { class: 'passage-head' },
      h('a', { class: 'cell-main', href: `/admin/documents/${p.document_id}` }, p.document_title),
      p.page ? h('span', { class: 'muted small' }, `page ${p.page}`) : null,
      p.heading ? h('span', { class: 'muted small passage-heading' }, p.heading) : null,
      h('span', { class: 'muted small passage-score', title: 'relevance score (higher is better)' }, `score ${fmtScore(p.score)}`)),
    h('p', { class: 'passage-text' }, highlight(p.text, q)));
}

// ---------- one document ----------

export async function documentDetailPage(main, { id }, ctx) {
  let doc = await api('GET', `/documents/${encodeURIComponent(id)}`);
  const canWrite = ctx.can('agents:write');
  const project = doc.project_id && ctx.can('projects:read') ? await api('GET', `/projects/${doc.project_id}`).catch(() => null) : null;
  const title = h('h1', { tabindex: '-1' }, doc.title);
  const info = h('dl', { class: 'kv', 'data-testid': 'doc-info' });
  const problem = h('div', { class: 'alert alert-danger', role: 'alert', hidden: true, 'data-testid': 'doc-error' });
  let pollTimer = null;
  let chunks = null;
  const fill = () => {
    replace(info,
      h('dt', null, 'Status'), h('dd', { 'data-testid': 'doc-status' }, statusBadge(doc.status)),
      h('dt', null, 'Filename'), h('dd', { class: 'break' }, doc.filename),
      h('dt', null, 'Type'), h('dd', null, `${typeLabel(doc.content_type)} (${doc.content_type})`),
      h('dt', null, 'Size'), h('dd', null, fmtBytes(doc.size_bytes)),
      h('dt', null, 'Chunks'), h('dd', null, String(doc.chunk_count)),
      doc.page_count ? [h('dt', null, 'Pages'), h('dd', null, String(doc.page_count))] : null,
      h('dt', null, 'Project'), h('dd', null, doc.project_id ? (project ? h('a', { href: `/admin/projects/${project.id}` }, project.name) : '(project)') : '—'),
      h('dt', null, 'SHA-256'), h('dd', null, h('code', { class: 'break' }, doc.sha256)),
      doc.metadata && Object.keys(doc.metadata).length ? [h('dt', null, 'Metadata'), h('dd', null, h('code', { class: 'wrap' }, JSON.stringify(doc.metadata, null, 2)))] : null,
      h('dt', null, 'Uploaded'), h('dd', null, fmtDate(doc.created_at)),
      h('dt', null, 'Updated'), h('dd', null, fmtDate(doc.updated_at)));
    if (doc.status === 'failed' && doc.error) { replace(problem, 'Indexing failed: ', doc.error); problem.hidden = false; } else problem.hidden = true;
  };
  const poll = () => {
    clearTimeout(pollTimer);
    if (!BUSY.has(doc.status)) return;
    pollTimer = setTimeout(async () => {
      if (!info.isConnected) return;
      try {
        const was = doc.status;
        doc = await api('GET', `/documents/${doc.id}`);
        if (!info.isConnected) return;
        fill();
        if (was !== doc.status && chunks) chunks.reload();
      } catch { /* tried again below */ }
      poll();
    }, POLL_MS);
  };
  fill();
  poll();

  const actions = [
    button('Download original', (ev) => act(ev.currentTarget, async () => {
      const { blob } = await apiBlob(`/documents/${doc.id}/file`);
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: doc.filename, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    })),
  ];
  if (canWrite) {
    actions.push(button('Reindex', async (ev) => {
      const r = await act(ev.currentTarget, () => api('POST', `/documents/${doc.id}/reindex`).then(() => true), 'Reindexing started.');
      if (!r) return;
      doc = await api('GET', `/documents/${doc.id}`).catch(() => doc);
      fill();
      poll();
      chunks.reload();
    }));
    actions.push(button('Delete', async (ev) => {
      if (!(await confirmAction(`Delete the document ${doc.title}? Its file, chunks and index entries are removed; agents can no longer cite it. This cannot be undone.`, { confirmLabel: 'Delete document' }))) return;
      if (await act(ev.currentTarget, () => api('DELETE', `/documents/${doc.id}`).then(() => true), `Document ${doc.title} deleted.`)) ctx.navigate('/documents');
    }, { kind: 'danger' }));
  }

  chunks = listView({
    path: `/documents/${doc.id}/chunks`, label: 'Chunks', prefix: 'c', search: false,
    columns: [
      { label: '#', class: 'nowrap', cell: (c) => String(c.ordinal) },
      { label: 'Page', cell: (c) => (c.page ? String(c.page) : '—') },
      { label: 'Heading', class: 'wrap', cell: (c) => c.heading || '—' },
      { label: 'Text', class: 'wrap chunk-text', cell: (c) => c.text },
      { label: 'Tokens', cell: (c) => String(c.token_count) },
    ],
    empty: 'No chunks yet.',
  });
  replace(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '/admin/documents' }, 'Documents'), ' / '),
    h('div', { class: 'page-head' }, title, h('div', { class: 'page-actions' }, actions)),
    problem,
    h('section', { class: 'card' }, info),
    h('h2', null, 'Chunks'),
    chunks.el);
}
