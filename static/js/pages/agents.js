import { h, replace } from '../dom.js';
import { api, listAll } from '../api.js';
import { pageHeader, listView, formDialog, confirmAction, button, badge, notify, act } from '../ui.js';

export const AGENT_TYPES = [['rfp', 'RFP'], ['jira', 'Jira'], ['documentation', 'Documentation'], ['hr', 'HR'], ['finance', 'Finance']];
const typeLabel = (t) => (AGENT_TYPES.find(([v]) => v === t) || [t, t])[1];

function parseJson(text, field) {
  if (!text.trim()) return {};
  let v;
  try { v = JSON.parse(text); } catch { throw new Error(`${field} is not valid JSON`); }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${field} must be a JSON object`);
  return v;
}

export async function agentsPage(main, _params, ctx) {
  const canWrite = ctx.can('agents:write');
  const projects = ctx.can('projects:read') ? await listAll('/projects').catch(() => []) : [];
  const projectName = (id) => (id ? (projects.find((p) => p.id === id) || { name: '—' }).name : '—');

  async function form(a) {
    // a superuser sees every organization's projects and documents: only the agent's own can scope it
    const org = a ? a.organization_id : ctx.me.organization_id;
    const sameOrg = (x) => !ctx.isSuper || !org || x.organization_id === org;
    const orgProjects = projects.filter(sameOrg);
    const projOptions = [['', '(none)'], ...orgProjects.map((p) => [p.id, p.name])];
    const kb = a && a.knowledge_base && typeof a.knowledge_base === 'object' && !Array.isArray(a.knowledge_base) ? a.knowledge_base : {};
    const kbProjects = Array.isArray(kb.project_ids) ? kb.project_ids : [];
    const kbDocs = Array.isArray(kb.document_ids) ? kb.document_ids : [];
    // the documents that can scope it: the ready ones, and those it already names whatever their state
    const docs = (await listAll('/documents', { status: 'ready' }).catch(() => [])).filter(sameOrg);
    for (const id of kbDocs) {
      if (!docs.some((d) => d.id === id)) docs.push(await api('GET', `/documents/${id}`).catch(() => ({ id, title: `(document ${id.slice(0, 8)})` })));
    }
    const kbFields = [
      { type: 'section', label: 'Knowledge base' },
      { name: 'knowledge_base.enabled', half: true, label: 'Use the knowledge base', type: 'checkbox', value: kb.enabled === true, help: 'Each reply retrieves passages from the documents and cites them.' },
      { name: 'knowledge_base.top_k', half: true, label: 'Passages per reply', type: 'number', min: 1, max: 20, step: 1, value: Number.isInteger(kb.top_k) ? kb.top_k : 5, help: 'top_k: 1 to 20 (default 5).', inputmode: 'numeric' },
    ];
    if (orgProjects.length || kbProjects.length) {
      kbFields.push({ name: 'knowledge_base.project_ids', half: true, label: 'Only these projects\' documents', type: 'multiselect', value: kbProjects,
        options: [...orgProjects.map((p) => [p.id, p.name]), ...kbProjects.filter((id) => !orgProjects.some((p) => p.id === id)).map((id) => [id, `(project ${id.slice(0, 8)})`])],
        help: 'None selected: the whole organization.' });
    }
    kbFields.push({ name: 'knowledge_base.document_ids', half: true, label: 'Only these documents', type: 'multiselect', value: kbDocs,
      options: docs.map((d) => [d.id, d.status && d.status !== 'ready' ? `${d.title} (${d.status})` : d.title]),
      help: docs.length ? 'None selected: every document in scope. Ctrl or Shift selects several.' : 'No ready documents yet: upload some on the Documents page.' });
    const saved = await formDialog({
      title: a ? `Edit ${a.name}` : 'New agent config', submitLabel: a ? 'Save' : 'Create agent config', wide: true,
      fields: [
        { name: 'name', label: 'Name', required: true, value: a ? a.name : '' },
        { name: 'agent_type', half: true, label: 'Type', type: 'select', value: a ? a.agent_type : 'rfp', options: AGENT_TYPES },
        { name: 'llm_model', half: true, label: 'Model', value: a ? a.llm_model : 'gemini-pro', help: 'The LLM the agent uses, e.g. gemini-pro.' },
        { name: 'description', label: 'Description', type: 'textarea', rows: 2, value: a ? a.description || '' : '' },
        { name: 'temperature', half: true, label: 'Temperature', type: 'number', min: 0, max: 2, step: 0.1, value: a ? a.temperature : 0.7, help: '0.0 (focused) to 2.0 (creative).', inputmode: 'decimal' },
        { name: 'max_tokens', half: true, label: 'Max tokens', type: 'number', min: 1, max: 128000, step: 1, value: a ? a.max_tokens : 2048, help: '1 to 128000.', inputmode: 'numeric' },
        { name: 'system_prompt', label: 'System prompt', type: 'textarea', rows: 5, value: a ? a.system_prompt || '' : '' },
        { name: 'tools', half: true, label: 'Tools', value: a ? a.tools.join(', ') : '', help: 'Comma-separated, e.g. search, summarize.' },
        { name: 'project_id', half: true, label: 'Project', type: 'select', value: a ? a.project_id || '' : '', options: projOptions },
        { name: 'settings', label: 'Settings (JSON object)', type: 'textarea', rows: 2, value: a ? JSON.stringify(a.settings) : '{}' },
        ...kbFields,
      ],
      onSubmit: (v) => {
        const temperature = Number(v.temperature);
        const maxTokens = Number(v.max_tokens);
        if (v.temperature === '' || Number.isNaN(temperature)) throw new Error('temperature must be a number');
        if (v.max_tokens === '' || !Number.isInteger(maxTokens)) throw new Error('max_tokens must be a whole number');
        const topK = Number(v['knowledge_base.top_k']);
        if (!Number.isInteger(topK) || topK < 1 || topK > 20) throw new Error('knowledge_base.top_k must be an integer between 1 and 20');
        // other keys of the stored object are kept as they are
        const knowledgeBase = { ...kb, enabled: v['knowledge_base.enabled'], top_k: topK };
        for (const k of ['project_ids', 'document_ids']) {
          const ids = v[`knowledge_base.${k}`] || [];
          if (ids.length) knowledgeBase[k] = ids; else delete knowledgeBase[k];
        }
        const body = {
          name: v.name.trim(), agent_type: v.agent_type, description: v.description.trim() || null,
          llm_model: v.llm_model.trim() || 'gemini-pro', temperature, max_tokens: maxTokens,
          system_prompt: v.system_prompt.trim() ? v.system_prompt : null,
          tools: v.tools.split(',').map((t) => t.trim()).filter(Boolean),
          project_id: v.project_id || null,
          knowledge_base: knowledgeBase,
          settings: parseJson(v.settings, 'settings'),
        };
        if (!a) for (const k of ['description', 'system_prompt', 'project_id']) if (body[k] === null) delete body[k];
        return a ? api('PUT', `/agent-configs/${a.id}`, { body }) : api('POST', '/agent-configs', { body });
      },
    });
    if (saved) { notify(`Agent config ${saved.name} ${a ? 'saved' : 'created'}.`); list.reload(); }
  }

  async function deactivate(a, btn) {
    if (!(await confirmAction(`Deactivate ${a.name}? New conversations can no longer use it; you can reactivate it later.`, { confirmLabel: 'Deactivate' }))) return;
    if (await act(btn, () => api('DELETE', `/agent-configs/${a.id}`).then(() => true), `${a.name} deactivated.`)) list.reload();
  }

  const columns = [
    { label: 'Name', cell: (a) => h('div', null, h('div', { class: 'cell-main' }, a.name), a.description ? h('div', { class: 'muted small' }, a.description) : null) },
    { label: 'Type', cell: (a) => badge(typeLabel(a.agent_type), 'accent') },
    { label: 'Model', cell: (a) => h('div', { class: 'nowrap' }, h('div', null, a.llm_model), h('div', { class: 'muted small' }, `temperature ${a.temperature}`), h('div', { class: 'muted small' }, `${a.max_tokens} max tokens`)) },
    { label: 'Tools', cell: (a) => (a.tools.length ? h('ul', { class: 'tags' }, a.tools.map((t) => h('li', { class: 'tag' }, t))) : '—') },
    { label: 'Project', cell: (a) => projectName(a.project_id) },
    { label: 'Status', cell: (a) => (a.is_active ? badge('active', 'ok') : badge('inactive', 'muted')) },
    { label: 'Actions', class: 'actions', cell: (a) => h('div', { class: 'row-actions' },
      canWrite ? button('Edit', () => form(a), { small: true, 'aria-label': `Edit ${a.name}` }) : null,
      canWrite && a.is_active ? button('Deactivate', (ev) => deactivate(a, ev.currentTarget), { small: true, kind: 'danger', 'aria-label': `Deactivate ${a.name}` }) : null,
      canWrite && !a.is_active ? button('Reactivate', (ev) => act(ev.currentTarget, () => api('POST', `/agent-configs/${a.id}/activate`), `${a.name} reactivated.`).then(list.reload), { small: true, 'aria-label': `Reactivate ${a.name}` }) : null) },
  ];
  const filters = [
    { name: 'agent_type', label: 'Type', options: [['', 'All types'], ...AGENT_TYPES] },
    { name: 'is_active', label: 'Status', options: [['', 'Active'], ['false', 'Inactive']] },
  ];
  if (projects.length) filters.push({ name: 'project_id', label: 'Project', options: [['', 'Any project'], ...projects.map((p) => [p.id, p.name])] });
  const list = listView({ path: '/agent-configs', label: 'Agent configs', columns, filters, searchLabel: 'Search agent configs', searchPlaceholder: 'Name or description', empty: 'No agent configs yet.' });
  replace(main,
    pageHeader('Agent configs', canWrite ? button('New agent config', () => form(), { kind: 'primary' }) : null),
    list.el);
  if (new URLSearchParams(location.search).get('new') === '1' && canWrite) {
    history.replaceState(null, '', location.pathname);
    form();
  }
}
