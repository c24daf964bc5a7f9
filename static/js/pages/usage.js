// Usage: tokens per day as an inline SVG bar chart (with a table of the same numbers), and the
// spending against each token budget in force (SPEC §8).
import { h, replace, fmtDate, fmtDay } from '../dom.js';
import { api } from '../api.js';
import { pageHeader, errText } from '../ui.js';

const SVG = 'http://www.w3.org/2000/svg';
const RANGES = [[7, 'Last 7 days'], [30, 'Last 30 days'], [90, 'Last 90 days']];
const BUDGET_LABELS = {
  org_monthly_tokens: ['Organization, this month', 'The organization\'s monthly token budget'],
  user_daily_tokens: ['You, today', 'Your daily token budget'],
};

/** An SVG element; attributes as given (set with setAttribute, never parsed). */
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const fmtInt = (n) => Number(n).toLocaleString();

/** The days from `from` to `to` (YYYY-MM-DD, inclusive). */
function days(from, to) {
  const out = [];
  for (let d = new Date(`${from}T00:00:00Z`); d <= new Date(`${to}T00:00:00Z`); d.setUTCDate(d.getUTCDate() + 1)) {
    out.push(d.toISOString().slice(0, 10));
  }
  return out;
}

/** A round number at or above `n` for the chart's top line. */
function niceMax(n) {
  if (n <= 0) return 10;
  const p = 10 ** Math.floor(Math.log10(n));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((v) => v >= n);
}

/** Bars of total tokens per day, with a text description; `rows` are the report's day groups. */
export function dayChart(report) {
  const byDay = new Map(report.data.map((r) => [r.key, r]));
  const all = days(report.from, report.to);
  const values = all.map((d) => (byDay.get(d) || { total_tokens: 0 }).total_tokens);
  const top = niceMax(Math.max(0, ...values));
  const W = 720, H = 220, left = 56, right = 8, topPad = 12, bottom = 28;
  const plotW = W - left - right, plotH = H - topPad - bottom;
  const step = plotW / all.length;
  const barW = Math.max(1, step * 0.7);
  const busiest = all[values.indexOf(Math.max(...values))];
  const total = values.reduce((a, b) => a + b, 0);
  const titleId = 'usage-chart-title', descId = 'usage-chart-desc';
  const grid = [0, 0.5, 1].map((f) => {
    const y = topPad + plotH - f * plotH;
    return s('g', { class: 'chart-grid' },
      s('line', { x1: left, x2: W - right, y1: y, y2: y }),
      s('text', { x: left - 6, y: y + 4, 'text-anchor': 'end' }, fmtInt(Math.round(top * f))));
  });
  const bars = all.map((d, i) => {
    const v = values[i];
    if (!v) return null;
    const bh = Math.max(1, (v / top) * plotH);
    return s('rect', { class: 'chart-bar', x: (left + i * step + (step - barW) / 2).toFixed(1), y: (topPad + plotH - bh).toFixed(1), width: barW.toFixed(1), height: bh.toFixed(1), 'data-day': d },
      s('title', null, `${d}: ${fmtInt(v)} tokens`));
  });
  const labels = [0, Math.floor((all.length - 1) / 2), all.length - 1].filter((v, i, a) => a.indexOf(v) === i).map((i) =>
    s('text', { class: 'chart-label', x: (left + i * step + step / 2).toFixed(1), y: H - 8, 'text-anchor': i === 0 ? 'start' : i === all.length - 1 ? 'end' : 'middle' }, all[i]));
  return s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': titleId, 'aria-describedby': descId, 'data-testid': 'usage-chart', preserveAspectRatio: 'xMidYMid meet' },
    s('title', { id: titleId }, `Tokens per day, ${report.from} to ${report.to}`),
    s('desc', { id: descId }, total
      ? `${fmtInt(total)} tokens on ${values.filter(Boolean).length} of ${all.length} days; the busiest day was ${busiest} with ${fmtInt(Math.max(...values))} tokens. The table below has every day.`
      : 'No tokens were used in this period.'),
    grid, s('g', { class: 'chart-bars' }, bars), labels);
}

function budgetCard(b) {
  const [label, long] = BUDGET_LABELS[b.name] || [b.name, b.name];
  const id = `budget-${b.name}`;
  const pct = b.limit ? Math.min(100, Math.round((b.used / b.limit) * 100)) : 0;
  return h('div', { class: 'budget', 'data-testid': id },
    h('div', { class: 'budget-head' },
      h('label', { for: id }, label),
      h('span', { class: ['budget-pct', pct >= 100 && 'budget-spent'] }, `${pct} %`)),
    h('meter', { id, class: 'budget-meter', min: '0', max: String(b.limit), low: String(Math.round(b.limit * 0.8)), high: String(Math.round(b.limit * 0.95)), optimum: '0', value: String(Math.min(b.used, b.limit)), 'aria-label': `${long}: ${fmtInt(b.used)} of ${fmtInt(b.limit)} tokens used` },
      `${fmtInt(b.used)} of ${fmtInt(b.limit)}`),
    h('p', { class: 'small muted budget-text' },
      `${fmtInt(b.used)} of ${fmtInt(b.limit)} tokens used, ${fmtInt(b.remaining)} left; starts afresh ${fmtDate(b.resets_at)}.`));
}

function dayTable(report) {
  const rows = report.data.filter((r) => r.total_tokens || r.requests);
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'table', 'data-testid': 'usage-table' },
      h('caption', { class: 'sr-only' }, `Tokens per day, ${report.from} to ${report.to}`),
      h('thead', null, h('tr', null, ['Day', 'Prompt tokens', 'Completion tokens', 'Total tokens', 'Requests'].map((c, i) => h('th', { scope: 'col', class: i ? 'num' : null }, c)))),
      h('tbody', null, rows.length
        ? rows.map((r) => h('tr', null,
          h('th', { scope: 'row' }, r.key),
          h('td', { class: 'num' }, fmtInt(r.prompt_tokens)),
          h('td', { class: 'num' }, fmtInt(r.completion_tokens)),
          h('td', { class: 'num' }, fmtInt(r.total_tokens)),
          h('td', { class: 'num' }, fmtInt(r.requests))))
        : h('tr', null, h('td', { colspan: '5', class: 'muted' }, 'No usage in this period.'))),
      rows.length ? h('tfoot', null, h('tr', null,
        h('th', { scope: 'row' }, 'Total'),
        h('td', { class: 'num' }, fmtInt(report.totals.prompt_tokens)),
        h('td', { class: 'num' }, fmtInt(report.totals.completion_tokens)),
        h('td', { class: 'num' }, fmtInt(report.totals.total_tokens)),
        h('td', { class: 'num' }, fmtInt(report.totals.requests)))) : null));
}

export async function usagePage(main, _params, ctx) {
  const params = new URLSearchParams(location.search);
  let range = Number(params.get('days')) || 30;
  if (!RANGES.some(([n]) => n === range)) range = 30;
  const select = h('select', { id: 'usage-range' }, RANGES.map(([n, l]) => h('option', { value: String(n), selected: n === range }, l)));
  const body = h('div', { 'aria-live': 'polite', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'));
  async function load() {
    body.setAttribute('aria-busy', 'true');
    const to = new Date().toISOString().slice(0, 10);
    const from = new Date(Date.now() - (range - 1) * 86_400_000).toISOString().slice(0, 10);
    try {
      const report = await api('GET', '/usage', { query: { from, to, group_by: 'day' } });
      replace(body,
        h('section', { class: 'card', 'aria-labelledby': 'budgets-h' },
          h('h2', { id: 'budgets-h' }, 'Token budgets'),
          report.budgets.length
            ? h('div', { class: 'budgets' }, report.budgets.map(budgetCard))
            : h('p', { class: 'muted', 'data-testid': 'no-budgets' }, 'No token budget is set. A superuser sets them in [limits] of copilot.toml, or for one organization in its settings.limits.')),
        h('section', { class: 'card', 'aria-labelledby': 'chart-h' },
          h('h2', { id: 'chart-h' }, 'Tokens per day'),
          h('p', { class: 'small muted' }, `${fmtDay(report.from)} – ${fmtDay(report.to)} (UTC days): ${fmtInt(report.totals.total_tokens)} tokens in ${fmtInt(report.totals.requests)} requests.`),
          h('div', { class: 'chart-wrap' }, dayChart(report))),
        h('section', { 'aria-labelledby': 'table-h' },
          h('h2', { id: 'table-h' }, 'By day'),
          dayTable(report)));
    } catch (e) {
      replace(body, h('p', { class: 'form-error', role: 'alert' }, errText(e)));
    } finally {
      body.removeAttribute('aria-busy');
    }
  }
  select.addEventListener('change', () => {
    range = Number(select.value);
    const url = new URL(location.href);
    url.searchParams.set('days', String(range));
    history.replaceState(null, '', url);
    load();
  });
  replace(main,
    pageHeader('Usage'),
    h('p', { class: 'muted' }, ctx.isOrgAdmin ? 'Tokens spent on generated replies in your organization.' : 'Tokens spent on the replies generated for you.'),
    h('div', { class: 'toolbar' }, h('div', { class: 'filter' }, h('label', { for: 'usage-range' }, 'Period'), select)),
    body);
  await load();
}
