// Browser tests of the admin console (node --test). run.sh starts the server and sets BASE_URL,
// ADMIN_PASSWORD, SCREENSHOTS (where the page screenshots go) and CHROMIUM.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';

// axe-core's browser build, evaluated in the page (evaluate is not subject to the page's CSP)
const AXE_SOURCE = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const BASE = process.env.BASE_URL;
const ADMIN_PASSWORD = process.env.ADMIN_PASSWORD;
const SHOTS = process.env.SCREENSHOTS;
if (!BASE || !ADMIN_PASSWORD) throw new Error('BASE_URL and ADMIN_PASSWORD must be set (use tests/browser/run.sh)');

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const TIMEOUT = 10_000;

const run = Date.now().toString(36);
const alice = { username: `alice_${run}`, email: `alice_${run}@example.com`, password: 'alice-password-1', full_name: 'Alice Analyst' };
const roleName = `analyst_${run}`;
const agentName = `RFP helper ${run}`;
const XSS = '<img src=x onerror=window.__xss=1>';
// what tests/browser/mock-llm.mjs answers (its REPLY, USAGE and ERROR)
const REPLY = 'Here is a draft of the security section: data is encrypted at rest and in transit.';
const USAGE = /42 prompt \+ 17 completion tokens/;
const LLM_ERROR = 'The mock provider is overloaded, try again later';

let browser;
const contexts = [];
const pageErrors = [];

async function newPage({ width = 1280, height = 860, colorScheme = 'light' } = {}) {
  const ctx = await browser.newContext({ viewport: { width, height }, colorScheme, baseURL: BASE });
  contexts.push(ctx);
  const page = await ctx.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('pageerror', (e) => pageErrors.push(e.message));
  // the console runs under a strict CSP: any violation (inline script or style) is a failure
  page.on('console', (m) => { if (/Content Security Policy|Refused to (apply|execute|load)/i.test(m.text())) pageErrors.push(m.text()); });
  page.on('dialog', (d) => { pageErrors.push(`unexpected browser dialog: ${d.message()}`); d.dismiss(); });
  return page;
}

async function shot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.waitForTimeout(150); // let loading states settle
  await page.evaluate(() => { document.querySelectorAll('#toasts > *').forEach((t) => t.remove()); window.scrollTo(0, 0); });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function signIn(page, username, password, { from = '/admin/' } = {}) {
  await page.goto(from);
  await page.locator('input[name=username]').fill(username);
  await page.locator('input[name=password]').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('header.topbar').waitFor();
}

/** Follow a link of the main navigation. */
const go = (page, label) => page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: label, exact: true }).click();

/** The dialog that is open now. */
const dialog = (page) => page.locator('dialog[open]');

async function api(method, p, token, body) {
  const r = await fetch(BASE + '/api/v1' + p, {
    method, headers: { ...(token ? { authorization: 'Bearer ' + token } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}
async function adminToken() {
  return (await api('POST', '/auth/login', null, { username: 'admin', password: ADMIN_PASSWORD })).body.access_token;
}
const sessionOf = (page) => page.evaluate(() => JSON.parse(sessionStorage.getItem('copilot.session')));

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // launch() gives the browser a fresh temporary profile (user-data-dir) of its own
    args: ARGS,
  });
});
after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  if (browser) await browser.close();
});

let admin; // the admin's page, shared by the tests that follow each other

test('a wrong password shows the API detail, and a locked account the 429 detail', async () => {
  const page = await newPage();
  await page.goto('/');
  assert.match(page.url(), /\/admin\/login/);
  await page.locator('input[name=username]').fill('admin');
  await page.locator('input[name=password]').fill('not-the-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const err = page.getByTestId('login-error');
  await err.waitFor({ state: 'visible' });
  assert.equal(await err.textContent(), 'Incorrect username or password');
  await shot(page, 'login');

  // lock an account that does not exist (failures count per name), then try in the UI
  const ghost = `ghost_${run}`;
  for (let i = 0; i < 10; i++) await api('POST', '/auth/login', null, { username: ghost, password: 'wrong-password' });
  await page.locator('input[name=username]').fill(ghost);
  await page.locator('input[name=password]').fill('wrong-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('login-error').filter({ hasText: 'Too many failed login attempts' }).waitFor();
});

test('sign-in goes back to the page that was asked for; dashboard shows counts and status', async () => {
  admin = await newPage();
  await admin.goto('/admin/users?search=adm');
  await admin.waitForURL(/\/admin\/login\?next=/);
  await admin.locator('input[name=username]').fill('admin');
  await admin.locator('input[name=password]').fill(ADMIN_PASSWORD);
  await admin.getByRole('button', { name: 'Sign in' }).click();
  await admin.waitForURL(/\/admin\/users\?search=adm$/);
  await admin.getByRole('heading', { name: 'Users', level: 1 }).waitFor();
  assert.equal(await admin.locator('input[type=search]').inputValue(), 'adm');
  await admin.locator('tbody tr', { hasText: 'admin@example.com' }).waitFor();

  await go(admin, 'Dashboard');
  await admin.getByTestId('stat-users').filter({ hasText: /Users\s*\d+/ }).waitFor();
  const version = (await api('GET', '/status')).body.version;
  await admin.getByTestId('version').filter({ hasText: version }).waitFor();
  await shot(admin, 'dashboard');
});

test('create a custom role and edit the permission matrix', async () => {
  await go(admin, 'Roles');
  await admin.getByRole('button', { name: 'New role' }).click();
  const d = dialog(admin);
  await d.locator('input[name=name]').fill(roleName);
  await d.locator('textarea[name=description]').fill('Reads users and talks to agents');
  for (const p of ['users:read', 'projects:read', 'agents:read', 'conversations:write']) await d.getByLabel(p, { exact: true }).check();
  await d.getByRole('button', { name: 'Create role' }).click();
  await d.waitFor({ state: 'detached' });
  await admin.locator('tbody tr', { hasText: roleName }).waitFor();

  // system roles are read-only in the matrix; the custom role's boxes call the API
  const matrix = admin.getByTestId('permission-matrix');
  assert.equal(await matrix.getByLabel('admin: users:write').isDisabled(), true);
  const box = matrix.getByLabel(`${roleName}: roles:read`);
  assert.equal(await box.isChecked(), false);
  await box.check();
  await admin.getByText(`Granted roles:read to ${roleName}.`).waitFor();
  const token = await adminToken();
  const roles = (await api('GET', `/roles?search=${roleName}`, token)).body.data;
  assert.deepEqual(roles[0].permissions.includes('roles:read'), true);
  await matrix.getByLabel(`${roleName}: roles:read`).uncheck();
  await admin.getByText(`Revoked roles:read from ${roleName}.`).waitFor();
  assert.equal((await api('GET', `/roles/${roles[0].id}`, token)).body.permissions.includes('roles:read'), false);
  await shot(admin, 'roles');
});

test('create a user (with a validation error first), then give them the custom role', async () => {
  await go(admin, 'Users');
  await admin.getByRole('button', { name: 'New user' }).click();
  const d = dialog(admin);
  await d.locator('input[name=username]').fill(alice.username);
  await d.locator('input[name=email]').fill('not-an-email');
  await d.locator('input[name=full_name]').fill(alice.full_name);
  await d.locator('input[name=password]').fill(alice.password);
  await d.getByRole('button', { name: 'Create user' }).click();
  // the API's detail appears next to the field it names
  const fieldError = d.locator('.field-error:not([hidden])');
  await fieldError.waitFor();
  assert.equal(await fieldError.textContent(), 'email is not a valid e-mail address');
  assert.equal(await d.locator('input[name=email]').getAttribute('aria-invalid'), 'true');
  await shot(admin, 'user-form');
  await d.locator('input[name=email]').fill(alice.email);
  await d.getByRole('button', { name: 'Create user' }).click();
  await d.waitFor({ state: 'detached' });
  const row = admin.locator('tbody tr', { hasText: alice.username });
  await row.waitFor();

  await row.getByRole('button', { name: `Change role of ${alice.username}` }).click();
  const rd = dialog(admin);
  await rd.locator('select[name=role_id]').selectOption({ label: roleName });
  await rd.getByRole('button', { name: 'Change role' }).click();
  await rd.waitFor({ state: 'detached' });
  await admin.locator('tbody tr', { hasText: alice.username }).filter({ hasText: roleName }).waitFor();
  await shot(admin, 'users');
});

test('a full_name with markup is shown as text and never runs', async () => {
  const xssUser = `xss_${run}`;
  // one through the public registration, one through the console's form
  const reg = await api('POST', '/auth/register', null, { username: xssUser, email: `${xssUser}@example.com`, password: 'xss-password-1', full_name: XSS });
  assert.equal(reg.status, 201);
  await admin.getByRole('button', { name: 'New user' }).click();
  const d = dialog(admin);
  await d.locator('input[name=username]').fill(`${xssUser}_2`);
  await d.locator('input[name=email]').fill(`${xssUser}_2@example.com`);
  await d.locator('input[name=full_name]').fill(XSS);
  await d.locator('input[name=password]').fill('xss-password-1');
  await d.getByRole('button', { name: 'Create user' }).click();
  await d.waitFor({ state: 'detached' });

  await admin.locator('input[type=search]').fill(xssUser);
  // the list before the search (admin and alice) has the same summary, "1–2 of 2": wait for the
  // searched page to be on the screen (no load in flight, two rows of the search), then count
  const rows = admin.locator('table:not([aria-busy]) tbody tr', { hasText: XSS });
  await rows.nth(1).waitFor({ timeout: 10_000 }).catch(() => {});
  await admin.locator('.summary', { hasText: /^1–2 of 2$/ }).waitFor();
  assert.equal(await rows.count(), 2, 'both names are shown literally');
  assert.equal(await admin.locator('main img').count(), 0, 'no <img> was created');
  // a notice with the name is text too
  await admin.waitForTimeout(300);
  assert.equal(await admin.evaluate(() => window.__xss), undefined);
  await admin.locator('input[type=search]').fill('');
});

test('create an agent config with every field', async () => {
  await go(admin, 'Agent configs');
  await admin.getByRole('button', { name: 'New agent config' }).click();
  const d = dialog(admin);
  await d.locator('input[name=name]').fill(agentName);
  await d.locator('select[name=agent_type]').selectOption('rfp');
  await d.locator('textarea[name=description]').fill('Drafts answers to requests for proposals');
  await d.locator('input[name=llm_model]').fill('gemini-pro');
  await d.locator('input[name=temperature]').fill('3');
  await d.locator('input[name=max_tokens]').fill('4096');
  await d.locator('textarea[name=system_prompt]').fill('You answer RFPs concisely.');
  await d.locator('input[name=tools]').fill('search, summarize');
  await d.getByRole('button', { name: 'Create agent config' }).click();
  await d.locator('.field-error', { hasText: 'temperature must be between 0.0 and 2.0' }).waitFor();
  await d.locator('input[name=temperature]').fill('0.3');
  await d.getByRole('button', { name: 'Create agent config' }).click();
  await d.waitFor({ state: 'detached' });
  const row = admin.locator('tbody tr', { hasText: agentName });
  await row.waitFor();
  assert.match(await row.textContent(), /summarize/);
  const token = await adminToken();
  const a = (await api('GET', `/agent-configs?search=${encodeURIComponent(agentName)}`, token)).body.data[0];
  assert.equal(a.temperature, 0.3);
  assert.equal(a.max_tokens, 4096);
  assert.deepEqual(a.tools, ['search', 'summarize']);
  assert.equal(a.system_prompt, 'You answer RFPs concisely.');

  // the type filter narrows the list
  await admin.getByLabel('Type').selectOption('hr');
  await admin.getByText('Nothing matches these filters.').waitFor();
  await admin.getByLabel('Type').selectOption('rfp');
  await row.waitFor();
  await shot(admin, 'agents');
});

test('projects: create one and add a member', async () => {
  await go(admin, 'Projects');
  await admin.getByRole('button', { name: 'New project' }).click();
  const d = dialog(admin);
  await d.locator('input[name=name]').fill(`Q3 RFPs ${run}`);
  await d.locator('textarea[name=description]').fill('Responses due in Q3');
  await d.getByRole('button', { name: 'Create project' }).click();
  await d.waitFor({ state: 'detached' });
  await admin.getByRole('link', { name: `Q3 RFPs ${run}`, exact: true }).click();
  await admin.getByRole('heading', { name: `Q3 RFPs ${run}` }).waitFor();
  await admin.getByRole('button', { name: 'Add member' }).click();
  const md = dialog(admin);
  await md.locator('select[name=user_id]').selectOption({ label: `${alice.username} — ${alice.full_name}` });
  await md.getByRole('button', { name: 'Add member' }).click();
  await md.waitFor({ state: 'detached' });
  await admin.locator('tbody tr', { hasText: alice.username }).waitFor();
  await shot(admin, 'project');
  await go(admin, 'Organizations');
  await admin.locator('tbody tr', { hasText: 'Default' }).waitFor();
  await shot(admin, 'organizations');
});

test('API keys: create one (shown once, with a copy button), use it, list it, revoke it after a confirmation', async () => {
  await go(admin, 'API keys');
  await admin.getByRole('heading', { name: 'API keys' }).waitFor();
  await admin.getByRole('button', { name: 'New API key' }).click();
  const d = dialog(admin);
  await d.locator('input[name=name]').fill(`export ${run}`);
  await d.getByRole('button', { name: 'Create key' }).click();
  await d.getByText('choose at least one permission').waitFor(); // nothing sent without a permission
  await d.getByLabel('agents:read', { exact: true }).check();
  await d.getByRole('button', { name: 'Create key' }).click();
  const shown = dialog(admin);
  const key = await shown.locator('#new-api-key').inputValue();
  assert.match(key, /^cpk_[A-Za-z0-9]{40}$/);
  assert.deepEqual(await axeViolations(admin), []);
  await shown.getByRole('button', { name: 'Copy the key' }).click();
  await shown.getByRole('status').filter({ hasText: /Copied|Selected/ }).waitFor();
  await shown.locator('.form-actions').getByRole('button', { name: 'Close' }).click();
  await shown.waitFor({ state: 'detached' });

  // the key works as a bearer token, within its permission
  assert.equal((await api('GET', '/agent-configs', key)).status, 200);
  assert.equal((await api('POST', '/agent-configs', key, { name: 'x', agent_type: 'hr' })).status, 403);
  const row = admin.locator('tbody tr', { hasText: `export ${run}` });
  await row.waitFor();
  assert.ok((await row.textContent()).includes(key.slice(0, 12)), 'the prefix is listed');
  assert.ok(!(await admin.content()).includes(key), 'the key itself is not on the page any more');
  await shot(admin, 'api-keys');

  await row.getByRole('button', { name: `Revoke export ${run}` }).click();
  const c = dialog(admin);
  await c.getByRole('button', { name: 'Cancel' }).click();
  assert.equal((await api('GET', '/agent-configs', key)).status, 200, 'Cancel keeps the key');
  await row.getByRole('button', { name: `Revoke export ${run}` }).click();
  await dialog(admin).getByRole('button', { name: 'Revoke key' }).click();
  await row.waitFor({ state: 'detached' });
  assert.equal((await api('GET', '/agent-configs', key)).status, 401, 'revoked at once');
});

// ---------- the knowledge base ----------
const kbWord = `zebraquartz${run}`; // a word only the Markdown document contains
const kbDocs = {
  md: { name: `security-${run}.md`, mimeType: 'text/markdown', buffer: Buffer.from(`# Security\n\n## Encryption\n\nCustomer data is encrypted at rest with AES-256 and in transit with TLS 1.3. Keys rotate every ${kbWord} quarter.\n`) },
  txt: { name: `handbook-${run}.txt`, mimeType: 'text/plain', buffer: Buffer.from(`Employee handbook ${run}\n\nVacation requests go to your manager two weeks ahead.\n`) },
  dropped: { name: `dropped-${run}.md`, type: 'text/markdown', text: `# Dropped notes ${run}\n\nThis file arrived by drag and drop onto the zone.\n` },
  png: { name: `logo-${run}.png`, mimeType: 'image/png', buffer: Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360000000000500010d0a2db40000000049454e44ae426082', 'hex') },
};
const kbAgentName = `Knowledge helper ${run}`;
const docRow = (page, name) => page.locator('tbody tr', { hasText: name });

test('documents: upload by picking and by dropping, each with a progress bar; statuses reach ready by themselves; a PNG shows the 415 detail', async () => {
  await go(admin, 'Documents');
  await admin.getByRole('heading', { name: 'Documents', level: 1 }).waitFor();
  // the drop zone is the file input's label: keyboard users reach the input, and it is named
  const input = admin.getByLabel(/Drop files here or choose files/);
  assert.equal(await input.getAttribute('type'), 'file');
  assert.equal(await input.getAttribute('multiple'), '');
  await admin.getByLabel('Project (optional)').focus();
  await admin.keyboard.press('Tab');
  assert.equal(await admin.evaluate(() => document.activeElement.type), 'file', 'Tab reaches the file input');
  // the Markdown document goes into the project (the agent's scope below names it)
  await admin.getByLabel('Project (optional)').selectOption({ label: `Q3 RFPs ${run}` });
  // the first list answer after the upload says "processing" (ingestion may be faster than the
  // test): the list must then ask again by itself until the documents are ready
  const listed = [];
  await admin.route(/\/api\/v1\/documents\?/, async (route) => {
    const res = await route.fetch();
    const json = await res.json();
    if (listed.push(route.request().url()) === 1) for (const doc of json.data) doc.status = 'processing';
    await route.fulfill({ response: res, json });
  });
  await input.setInputFiles([kbDocs.md, kbDocs.txt]);
  const uploads = admin.getByTestId('upload');
  for (const f of [kbDocs.md, kbDocs.txt]) {
    const item = uploads.filter({ hasText: f.name });
    await item.and(admin.locator('[data-state=ok]')).waitFor();
    const bar = item.getByRole('progressbar', { name: `Upload progress of ${f.name}` });
    assert.equal(await bar.getAttribute('value'), '100');
    assert.match(await item.textContent(), /Uploaded — .* is being indexed\./);
  }
  await docRow(admin, kbDocs.md.name).getByTestId('doc-status').filter({ hasText: /^processing$/ }).waitFor();
  await docRow(admin, kbDocs.md.name).getByTestId('doc-status').filter({ hasText: /^ready$/ }).waitFor({ timeout: 20_000 });
  assert.ok(listed.length >= 2, `the list asked again by itself (${listed.length} requests)`);
  await admin.unroute(/\/api\/v1\/documents\?/);
  await admin.getByLabel('Project (optional)').selectOption('');
  // a synthetic drop of a file on the zone
  const dt = await admin.evaluateHandle(({ name, type, text }) => {
    const d = new DataTransfer();
    d.items.add(new File([text], name, { type }));
    return d;
  }, kbDocs.dropped);
  await admin.getByTestId('dropzone').dispatchEvent('dragenter', { dataTransfer: dt });
  await admin.getByTestId('dropzone').dispatchEvent('drop', { dataTransfer: dt });
  const dropped = uploads.filter({ hasText: kbDocs.dropped.name });
  await dropped.and(admin.locator('[data-state=ok]')).waitFor();
  assert.equal(await dropped.getByRole('progressbar').getAttribute('value'), '100');
  // the same bytes again: 409 with a link to the existing document; a file without text: 400
  await input.setInputFiles([{ name: `again-${run}.md`, mimeType: 'text/markdown', buffer: Buffer.from(kbDocs.dropped.text) },
    { name: `blank-${run}.txt`, mimeType: 'text/plain', buffer: Buffer.from('   \n\n ') }]);
  const again = uploads.filter({ hasText: `again-${run}.md` });
  await again.and(admin.locator('[data-state=error]')).waitFor();
  assert.match(await again.getByRole('alert').textContent(), /^A document with the same content already exists in this organization and project: [0-9a-f-]{36} Open it$/);
  assert.equal(await again.getByRole('link', { name: 'Open it' }).count(), 1);
  const blank = uploads.filter({ hasText: `blank-${run}.txt` });
  await blank.and(admin.locator('[data-state=error]')).waitFor();
  assert.match(await blank.getByRole('alert').textContent(), /no extractable text/);
  // an image is refused with the server's detail, and nothing is stored
  await input.setInputFiles(kbDocs.png);
  const refused = uploads.filter({ hasText: kbDocs.png.name });
  await refused.and(admin.locator('[data-state=error]')).waitFor();
  assert.match(await refused.getByRole('alert').textContent(), /^This type of file cannot be read\. Accepted: plain text/);
  const token = await adminToken();
  assert.equal((await api('GET', `/documents?search=${encodeURIComponent(kbDocs.png.name)}`, token)).body.total, 0);

  // the list shows them and their statuses reach ready without a reload
  for (const name of [kbDocs.md.name, kbDocs.txt.name, kbDocs.dropped.name]) {
    await docRow(admin, name).getByTestId('doc-status').filter({ hasText: /^ready$/ }).waitFor({ timeout: 20_000 });
  }
  const md = docRow(admin, kbDocs.md.name);
  assert.match(await md.textContent(), /Markdown/);
  assert.match(await md.textContent(), new RegExp(`Q3 RFPs ${run}`));
  // once none is pending or processing, the list stops asking
  const polls = [];
  const onRequest = (r) => { if (/\/api\/v1\/documents\?/.test(r.url())) polls.push(r.url()); };
  admin.on('request', onRequest);
  await admin.waitForTimeout(3500);
  admin.off('request', onRequest);
  assert.deepEqual(polls, []);
  await shot(admin, 'documents');
});

test('test retrieval shows ranked passages with the query\'s words highlighted', async () => {
  await admin.getByLabel('Query').fill(`encrypted ${kbWord}`);
  await admin.getByRole('search', { name: 'Test retrieval' }).getByRole('button', { name: 'Search' }).click();
  const passage = admin.getByTestId('passage').filter({ hasText: kbWord });
  await passage.waitFor();
  assert.equal(await passage.getByRole('link', { name: kbDocs.md.name }).count(), 1);
  assert.match(await passage.textContent(), /Security > Encryption/);
  assert.match(await passage.textContent(), /score -?\d+\.\d+(e-?\d+)?/);
  const marks = await passage.locator('mark').allTextContents();
  assert.ok(marks.includes('encrypted') && marks.includes(kbWord), `highlighted: ${marks}`);
  // a query with markup is searched as text: nothing is parsed as HTML
  await admin.getByLabel('Query').fill(XSS);
  await admin.getByRole('search', { name: 'Test retrieval' }).getByRole('button', { name: 'Search' }).click();
  await admin.waitForTimeout(300);
  assert.equal(await admin.locator('main img').count(), 0);
  assert.equal(await admin.evaluate(() => window.__xss), undefined);
  await admin.getByLabel('Query').fill(`encrypted ${kbWord}`);
  await admin.getByRole('search', { name: 'Test retrieval' }).getByRole('button', { name: 'Search' }).click();
  await passage.waitFor();
});

test('a document\'s detail: metadata, chunks, the original file, reindex; delete asks first', async () => {
  await admin.getByRole('link', { name: kbDocs.md.name, exact: true }).first().click();
  await admin.getByRole('heading', { name: kbDocs.md.name, level: 1 }).waitFor();
  const info = admin.getByTestId('doc-info');
  await info.getByTestId('doc-status').filter({ hasText: 'ready' }).waitFor();
  assert.match(await info.textContent(), /text\/markdown/);
  assert.match(await info.textContent(), new RegExp(`Q3 RFPs ${run}`));
  const chunk = admin.locator('tbody tr', { hasText: kbWord });
  await chunk.waitFor();
  assert.match(await chunk.textContent(), /Security > Encryption/);
  const [download] = await Promise.all([admin.waitForEvent('download'), admin.getByRole('button', { name: 'Download original' }).click()]);
  assert.equal(download.suggestedFilename(), kbDocs.md.name);
  assert.equal(fs.readFileSync(await download.path(), 'utf8'), kbDocs.md.buffer.toString());
  await admin.getByRole('button', { name: 'Reindex' }).click();
  await admin.getByText('Reindexing started.').waitFor();
  await info.getByTestId('doc-status').filter({ hasText: 'ready' }).waitFor({ timeout: 20_000 });
  await chunk.waitFor();
  await shot(admin, 'document');

  // the handbook is deleted: Cancel keeps it, confirming removes it and its chunks
  await go(admin, 'Documents');
  await admin.getByRole('link', { name: kbDocs.txt.name, exact: true }).click();
  await admin.getByRole('heading', { name: kbDocs.txt.name, level: 1 }).waitFor();
  const id = admin.url().split('/').pop();
  const token = await adminToken();
  await admin.getByRole('button', { name: 'Delete' }).click();
  await dialog(admin).getByRole('button', { name: 'Cancel' }).click();
  await dialog(admin).waitFor({ state: 'detached' });
  assert.equal((await api('GET', `/documents/${id}`, token)).status, 200);
  await admin.getByRole('button', { name: 'Delete' }).click();
  assert.match(await dialog(admin).textContent(), /cannot be undone/);
  await dialog(admin).getByRole('button', { name: 'Delete document' }).click();
  await admin.waitForURL(/\/admin\/documents$/);
  await admin.getByText(`Document ${kbDocs.txt.name} deleted.`).waitFor();
  await docRow(admin, kbDocs.md.name).waitFor();
  assert.equal(await docRow(admin, kbDocs.txt.name).count(), 0);
  assert.equal((await api('GET', `/documents/${id}`, token)).status, 404);
});

test('the agent form\'s knowledge section round-trips: save, reopen, values kept', async () => {
  const token = await adminToken();
  const created = await api('POST', '/agent-configs', token, { name: kbAgentName, agent_type: 'documentation', llm_model: 'gemini-pro' });
  assert.equal(created.status, 201);
  const docs = (await api('GET', `/documents?search=${encodeURIComponent(kbDocs.md.name)}`, token)).body.data;
  const project = (await api('GET', `/projects?search=${encodeURIComponent(`Q3 RFPs ${run}`)}`, token)).body.data[0];
  await go(admin, 'Agent configs');
  await admin.getByRole('button', { name: `Edit ${kbAgentName}` }).click();
  let d = dialog(admin);
  await d.getByRole('heading', { name: 'Knowledge base' }).waitFor();
  assert.equal(await d.locator('textarea[name=knowledge_base]').count(), 0, 'no raw JSON any more');
  const enabled = d.getByLabel('Use the knowledge base');
  const topK = d.getByLabel('Passages per reply');
  assert.equal(await enabled.isChecked(), false);
  assert.equal(await topK.inputValue(), '5');
  await enabled.check();
  await topK.fill('21');
  await d.getByRole('button', { name: 'Save' }).click();
  await d.locator('.field-error:not([hidden])', { hasText: 'knowledge_base.top_k must be an integer between 1 and 20' }).waitFor();
  await topK.fill('3');
  await d.getByLabel('Only these projects\' documents').selectOption([project.id]);
  await d.getByLabel('Only these documents').selectOption({ label: kbDocs.md.name });
  await d.getByRole('button', { name: 'Save' }).click();
  await d.waitFor({ state: 'detached' });
  await admin.getByText(`Agent config ${kbAgentName} saved.`).waitFor();
  const stored = (await api('GET', `/agent-configs/${created.body.id}`, token)).body.knowledge_base;
  assert.deepEqual(stored, { enabled: true, top_k: 3, project_ids: [project.id], document_ids: [docs[0].id] });

  await admin.getByRole('button', { name: `Edit ${kbAgentName}` }).click();
  d = dialog(admin);
  assert.equal(await d.getByLabel('Use the knowledge base').isChecked(), true);
  assert.equal(await d.getByLabel('Passages per reply').inputValue(), '3');
  const chosen = (sel) => sel.evaluate((s) => [...s.selectedOptions].map((o) => o.value));
  assert.deepEqual(await chosen(d.getByLabel('Only these projects\' documents')), [project.id]);
  assert.deepEqual(await chosen(d.getByLabel('Only these documents')), [docs[0].id]);
  if (SHOTS) {
    await d.getByRole('heading', { name: 'Knowledge base' }).scrollIntoViewIfNeeded();
    await d.screenshot({ path: path.join(SHOTS, 'agent-knowledge.png') });
  }
  await d.getByRole('button', { name: 'Cancel' }).click();
  await d.waitFor({ state: 'detached' });
});

test('a conversation with a knowledge-enabled agent shows its sources; a source opens its passage', async () => {
  await go(admin, 'Conversations');
  await admin.getByRole('button', { name: 'New conversation' }).click();
  const d = dialog(admin);
  await d.locator('input[name=title]').fill(`Cited ${run}`);
  await d.locator('select[name=agent_config_id]').selectOption({ label: `${kbAgentName} (documentation)` });
  await d.getByRole('button', { name: 'Start conversation' }).click();
  await admin.getByRole('heading', { name: `Cited ${run}` }).waitFor();
  await admin.getByLabel('Message', { exact: true }).fill(`How is customer data encrypted? ${kbWord}`);
  await admin.getByRole('button', { name: 'Send' }).click();
  const t = admin.getByTestId('transcript');
  // live: the citations event comes before the text
  await admin.getByTestId('streaming-reply').getByTestId('sources').waitFor();
  const reply = t.locator('.msg-assistant', { hasText: REPLY });
  await reply.getByTestId('usage').waitFor();
  const source = reply.getByTestId('sources').getByRole('button', { name: `[1] ${kbDocs.md.name}` });
  await source.waitFor();
  // stored: a reload shows them again
  await admin.reload();
  await source.click();
  const sd = dialog(admin);
  await sd.getByRole('heading', { name: 'Source 1' }).waitFor();
  assert.match(await sd.getByTestId('source-snippet').textContent(), /encrypted at rest/);
  await sd.getByText('Security > Encryption').waitFor();
  assert.match(await sd.textContent(), new RegExp(kbDocs.md.name.replace(/\./g, '\\.')));
  await shot(admin, 'conversation-sources');
  await sd.getByRole('link', { name: 'Open the document' }).click();
  await admin.getByRole('heading', { name: kbDocs.md.name, level: 1 }).waitFor();
  assert.equal(await dialog(admin).count(), 0, 'the dialog closed');
  assert.match(admin.url(), /\/admin\/documents\/[0-9a-f-]{36}$/);
});

test('the Documents page, its dialogs and the knowledge section pass axe-core, light and dark', async () => {
  const token = await adminToken();
  const doc = (await api('GET', `/documents?search=${encodeURIComponent(kbDocs.md.name)}`, token)).body.data[0];
  const conv = (await api('GET', `/conversations?search=${encodeURIComponent(`Cited ${run}`)}`, token)).body.data[0];
  const found = [];
  for (const colorScheme of ['light', 'dark']) {
    const page = await newPage({ colorScheme });
    await signIn(page, 'admin', ADMIN_PASSWORD, { from: '/admin/documents' });
    await docRow(page, kbDocs.md.name).waitFor();
    await page.getByLabel('Query').fill(`encrypted ${kbWord}`);
    await page.getByRole('search', { name: 'Test retrieval' }).getByRole('button', { name: 'Search' }).click();
    await page.getByTestId('passage').first().waitFor();
    await page.getByLabel(/Drop files here/).setInputFiles(kbDocs.png); // a failed upload's row
    await page.getByTestId('upload').and(page.locator('[data-state=error]')).waitFor();
    for (const v of await axeViolations(page)) found.push(`${colorScheme} /admin/documents: ${v}`);
    if (colorScheme === 'dark') await shot(page, 'dark-documents');

    await page.goto(`/admin/documents/${doc.id}`);
    await page.locator('tbody tr', { hasText: kbWord }).waitFor();
    for (const v of await axeViolations(page)) found.push(`${colorScheme} document: ${v}`);
    await page.getByRole('button', { name: 'Delete' }).click();
    await dialog(page).waitFor();
    for (const v of await axeViolations(page)) found.push(`${colorScheme} delete dialog: ${v}`);
    await dialog(page).getByRole('button', { name: 'Cancel' }).click();

    await page.goto('/admin/agents');
    await page.getByRole('button', { name: `Edit ${kbAgentName}` }).click();
    await dialog(page).getByRole('heading', { name: 'Knowledge base' }).waitFor();
    for (const v of await axeViolations(page)) found.push(`${colorScheme} agent form: ${v}`);
    await dialog(page).getByRole('button', { name: 'Cancel' }).click();

    await page.goto(`/admin/conversations/${conv.id}`);
    await page.getByTestId('sources').first().getByRole('button').first().click();
    await dialog(page).getByText('Security > Encryption').waitFor();
    for (const v of await axeViolations(page)) found.push(`${colorScheme} source dialog: ${v}`);
    await page.close();
  }
  assert.deepEqual(found, []);
});

test('destructive actions ask first; API refusals show their detail', async () => {
  const token = await adminToken();
  const bob = `bob_${run}`;
  assert.equal((await api('POST', '/users', token, { username: bob, email: `${bob}@example.com`, password: 'bob-password-1' })).status, 201);
  await go(admin, 'Users');
  await admin.locator('input[type=search]').fill(bob);
  await admin.locator('.summary', { hasText: /^1–1 of 1$/ }).waitFor();
  // cancel keeps the user
  await admin.getByRole('button', { name: `Deactivate ${bob}` }).click();
  await dialog(admin).getByRole('button', { name: 'Cancel' }).click();
  await dialog(admin).waitFor({ state: 'detached' });
  assert.equal((await api('GET', `/users?search=${bob}`, token)).body.total, 1);
  // confirm deactivates; the Deactivated filter shows them with Reactivate
  await admin.getByRole('button', { name: `Deactivate ${bob}` }).click();
  await dialog(admin).getByRole('button', { name: 'Deactivate' }).click();
  await admin.getByText(`${bob} deactivated.`).waitFor();
  await admin.getByLabel('Status').selectOption('false');
  await admin.getByRole('button', { name: `Reactivate ${bob}` }).click();
  await admin.getByText(`${bob} reactivated.`).waitFor();
  await admin.getByLabel('Status').selectOption('');

  // deleting a role that a user holds: the API says 409 and the console shows why
  await go(admin, 'Roles');
  await admin.getByRole('button', { name: `Delete role ${roleName}` }).click();
  await dialog(admin).getByRole('button', { name: 'Delete role' }).click();
  await admin.locator('.toast-error', { hasText: 'give them another role before deleting it' }).waitFor();

  // a superuser creates an organization and moves a user into it
  await go(admin, 'Organizations');
  await admin.getByRole('button', { name: 'New organization' }).click();
  const d = dialog(admin);
  await d.locator('input[name=name]').fill('Default');
  await d.getByRole('button', { name: 'Create organization' }).click();
  await d.locator('.field-error:not([hidden]), .form-error:not([hidden])').waitFor();
  await d.locator('input[name=name]').fill(`Acme ${run}`);
  await d.locator('input[name=domain]').fill('acme.example');
  await d.getByRole('button', { name: 'Create organization' }).click();
  await d.waitFor({ state: 'detached' });
  await admin.getByRole('link', { name: `Acme ${run}`, exact: true }).click();
  await admin.getByRole('heading', { name: `Acme ${run}` }).waitFor();
  await admin.getByRole('button', { name: 'Move a user here' }).click();
  const md = dialog(admin);
  await md.locator('select[name=user_id]').selectOption({ label: bob });
  await md.getByRole('button', { name: 'Move user' }).click();
  await md.waitFor({ state: 'detached' });
  await admin.locator('tbody tr', { hasText: bob }).filter({ hasText: 'member' }).waitFor();
  await shot(admin, 'organization');
});

test('sign out ends the session on the server too', async () => {
  const { access } = await sessionOf(admin);
  await admin.getByRole('button', { name: 'Sign out' }).isHidden();
  await admin.getByTitle('Account menu').click();
  await admin.getByRole('button', { name: 'Sign out' }).click();
  await admin.waitForURL(/\/admin\/login/);
  await admin.locator('input[name=username]').waitFor();
  assert.equal(await sessionOf(admin), null);
  assert.equal((await api('GET', '/auth/me', access)).status, 401);
});

let alicePage;
test('the custom-role user does not see controls their role forbids', async () => {
  alicePage = await newPage();
  await signIn(alicePage, alice.username, alice.password);
  const nav = alicePage.getByRole('navigation', { name: 'Main' });
  for (const visible of ['Dashboard', 'Users', 'Projects', 'Agent configs', 'Documents', 'Conversations']) await nav.getByRole('link', { name: visible }).waitFor();
  for (const hidden of ['Organizations', 'Roles']) assert.equal(await nav.getByRole('link', { name: hidden }).count(), 0, `${hidden} hidden`);
  await go(alicePage, 'Users');
  await alicePage.locator('tbody tr', { hasText: alice.username }).waitFor();
  assert.equal(await alicePage.getByRole('button', { name: 'New user' }).count(), 0);
  assert.equal(await alicePage.getByRole('button', { name: /^Deactivate/ }).count(), 0);
  await go(alicePage, 'Agent configs');
  await alicePage.locator('tbody tr', { hasText: agentName }).waitFor();
  assert.equal(await alicePage.getByRole('button', { name: 'New agent config' }).count(), 0);
  assert.equal(await alicePage.getByRole('button', { name: `Edit ${agentName}` }).count(), 0);
  // agents:read reads and searches the knowledge base; uploading, reindexing, deleting need agents:write
  await go(alicePage, 'Documents');
  await alicePage.locator('tbody tr', { hasText: `security-${run}.md` }).waitFor();
  assert.equal(await alicePage.getByTestId('file-input').count(), 0);
  await alicePage.getByRole('link', { name: `security-${run}.md`, exact: true }).click();
  await alicePage.getByRole('button', { name: 'Download original' }).waitFor();
  assert.equal(await alicePage.getByRole('button', { name: 'Delete' }).count(), 0);
  assert.equal(await alicePage.getByRole('button', { name: 'Reindex' }).count(), 0);
  // a page the role does not allow explains itself instead of failing
  await alicePage.goto('/admin/roles');
  await alicePage.getByText('Your role does not include roles:read').waitFor();
});

test('start a conversation with the agent, post a message, rename and archive it', async () => {
  const page = alicePage;
  await go(page, 'Conversations');
  await page.getByRole('button', { name: 'New conversation' }).click();
  const d = dialog(page);
  await d.locator('input[name=title]').fill('Acme RFP');
  await d.locator('select[name=agent_config_id]').selectOption({ label: `${agentName} (rfp)` });
  await d.getByRole('button', { name: 'Start conversation' }).click();
  await page.waitForURL(/\/admin\/conversations\/[0-9a-f-]{36}$/);
  await page.getByRole('heading', { name: 'Acme RFP' }).waitFor();
  // posted by hand, without asking the agent (streamed replies are tested below)
  await page.getByLabel('Post').selectOption('user');
  await page.getByLabel('Message', { exact: true }).fill('Draft the security section, please.');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.getByTestId('transcript').getByText('Draft the security section, please.').waitFor();
  await page.getByLabel('Message', { exact: true }).fill(XSS);
  await page.getByLabel('Post').selectOption('assistant');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.getByTestId('transcript').getByText(XSS).waitFor();
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  await shot(page, 'conversation');

  await page.getByRole('button', { name: 'Rename' }).click();
  const rd = dialog(page);
  await rd.locator('input[name=title]').fill('Acme RFP — security');
  await rd.getByRole('button', { name: 'Rename' }).click();
  await page.getByRole('heading', { name: 'Acme RFP — security' }).waitFor();
  await page.getByRole('button', { name: 'Archive' }).click();
  await page.getByRole('button', { name: 'Unarchive' }).waitFor();
  // a reload of the deep link shows the same conversation
  await page.reload();
  await page.getByRole('heading', { name: 'Acme RFP — security' }).waitFor();
  assert.equal(await page.getByTestId('transcript').locator('li').count(), 2);
  await page.getByRole('link', { name: 'My conversations' }).first().click();
  await page.getByLabel('Show').selectOption('true');
  await page.locator('tbody tr', { hasText: 'Acme RFP — security' }).waitFor();
  await shot(page, 'conversations');
});

test('a reply from the agent streams in, then shows the stored message with its usage', async () => {
  const page = alicePage;
  await go(page, 'Conversations');
  await page.getByRole('button', { name: 'New conversation' }).click();
  const d = dialog(page);
  await d.locator('input[name=title]').fill('Security questionnaire');
  await d.locator('select[name=agent_config_id]').selectOption({ label: `${agentName} (rfp)` });
  await d.getByRole('button', { name: 'Start conversation' }).click();
  await page.getByRole('heading', { name: 'Security questionnaire' }).waitFor();
  // record every text the reply being written shows
  await page.evaluate(() => {
    window.__partials = [];
    new MutationObserver(() => {
      const b = document.querySelector('[data-testid=streaming-reply] .msg-body');
      if (b) window.__partials.push(b.textContent);
    }).observe(document.querySelector('[data-testid=transcript]'), { childList: true, subtree: true, characterData: true });
  });
  assert.equal(await page.getByLabel('Post').inputValue(), 'agent', 'a conversation with an agent asks it by default');
  await page.getByLabel('Message', { exact: true }).fill('Draft the security section.');
  await page.getByRole('button', { name: 'Send' }).click();
  const t = page.getByTestId('transcript');
  await t.locator('.msg-user', { hasText: 'Draft the security section.' }).waitFor();
  const live = page.getByTestId('streaming-reply');
  await live.filter({ hasText: 'Here is a draft' }).waitFor();
  assert.equal(await live.getAttribute('aria-busy'), 'true');
  assert.ok(await page.getByRole('button', { name: 'Stop the reply' }).isVisible(), 'Stop is offered while streaming');
  assert.ok(await page.getByRole('button', { name: 'Send' }).isDisabled());
  await page.getByTestId('chat-status').filter({ hasText: 'writing' }).waitFor();
  const final = t.locator('.msg-assistant', { hasText: REPLY });
  await final.getByTestId('usage').waitFor();
  assert.equal(await live.count(), 0, 'the growing reply was replaced by the stored one');
  const partials = await page.evaluate(() => window.__partials);
  assert.ok(partials.some((p) => p.length > 0 && p.length < REPLY.length && REPLY.startsWith(p)), `an intermediate text was shown: ${JSON.stringify(partials)}`);
  const usage = await final.getByTestId('usage').textContent();
  assert.match(usage, /gemini-pro/);
  assert.match(usage, USAGE);
  assert.match(usage, /\d+(\.\d)? m?s/);
  assert.equal(await page.getByLabel('Message', { exact: true }).inputValue(), '');
  assert.equal(await page.getByRole('button', { name: 'Stop the reply' }).isVisible(), false);
  assert.equal(await page.getByRole('button', { name: 'Send' }).isDisabled(), false);
  // it is stored: a reload shows the same
  await page.reload();
  await t.locator('.msg-assistant', { hasText: REPLY }).getByTestId('usage').filter({ hasText: USAGE }).waitFor();
});

test('a broken stream is picked up again with Last-Event-ID', async () => {
  const page = alicePage;
  // the answer is cut after its first two events (user_message and one delta)
  await page.route('**/completions', async (route) => {
    if (route.request().method() !== 'POST') return route.continue();
    const full = await (await route.fetch()).text();
    const events = full.split('\n\n').filter((e) => e.trim());
    await route.fulfill({ status: 200, headers: { 'content-type': 'text/event-stream' }, body: events.slice(0, 2).join('\n\n') + '\n\n' });
  });
  const reattached = [];
  const onRequest = (r) => { if (r.method() === 'GET' && /\/completions\/[0-9a-f-]{36}$/.test(r.url())) reattached.push(r.headers()['last-event-id']); };
  page.on('request', onRequest);
  try {
    await page.getByLabel('Message', { exact: true }).fill('Once more, please.');
    await page.getByRole('button', { name: 'Send' }).click();
    const t = page.getByTestId('transcript');
    await t.locator('.msg-user', { hasText: 'Once more, please.' }).waitFor();
    await page.waitForFunction((reply) => document.querySelectorAll('[data-testid=transcript] .msg-assistant [data-testid=usage]').length === 2
      && [...document.querySelectorAll('[data-testid=transcript] .msg-assistant .msg-body')].every((b) => b.textContent === reply), REPLY);
    assert.deepEqual(reattached, ['2']);
    assert.equal(await page.getByTestId('streaming-reply').count(), 0);
  } finally {
    page.off('request', onRequest);
    await page.unroute('**/completions');
  }
});

test('Stop cancels a slow reply and the transcript marks it cancelled', async () => {
  const page = alicePage;
  await page.getByLabel('Message', { exact: true }).fill('The long version, please. [slow]');
  await page.getByRole('button', { name: 'Send' }).click();
  const live = page.getByTestId('streaming-reply');
  await live.filter({ hasText: 'word2' }).waitFor();
  await shot(page, 'conversation-streaming');
  // keyboard: Send had the focus, so Stop has it now
  await page.waitForFunction(() => document.activeElement && document.activeElement.getAttribute('aria-label') === 'Stop the reply');
  await page.keyboard.press('Enter');
  const cancelled = page.getByTestId('transcript').locator('.msg-assistant[data-status=cancelled]');
  await cancelled.waitFor();
  const text = await cancelled.textContent();
  assert.match(text, /cancelled/);
  assert.match(text, /word1 word2/);
  assert.doesNotMatch(text, /word60/);
  assert.equal(await live.count(), 0);
  assert.equal(await page.getByRole('button', { name: 'Stop the reply' }).isVisible(), false);
  const token = (await sessionOf(page)).access;
  const convId = page.url().split('/').pop();
  const msgs = (await api('GET', `/conversations/${convId}`, token)).body.messages;
  assert.equal(msgs[msgs.length - 1].metadata.status, 'cancelled');
});

test('a provider error shows its detail in the transcript; the user message stays', async () => {
  const page = alicePage;
  await page.getByLabel('Message', { exact: true }).fill('Please fail. [error]');
  await page.getByRole('button', { name: 'Send' }).click();
  const t = page.getByTestId('transcript');
  await t.getByTestId('transcript-note').filter({ hasText: LLM_ERROR }).waitFor();
  await t.locator('.msg-user', { hasText: 'Please fail. [error]' }).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Send' }).isDisabled(), false);
  await page.reload();
  await t.locator('.msg-user', { hasText: 'Please fail. [error]' }).waitFor();
  // the failed job's detail is shown again after a reload
  await t.getByTestId('transcript-note').filter({ hasText: LLM_ERROR }).waitFor();
  await shot(page, 'conversation-stream');
});

test('an agent whose model no provider serves: the 503 detail names the setting', async () => {
  const page = alicePage;
  const token = await adminToken();
  const a = await api('POST', '/agent-configs', token, { name: `Unserved ${run}`, agent_type: 'rfp', llm_model: 'gpt-unserved' });
  assert.equal(a.status, 201);
  const c = await api('POST', '/conversations', (await sessionOf(page)).access, { title: 'No provider', agent_config_id: a.body.id });
  assert.equal(c.status, 201);
  await page.goto(`/admin/conversations/${c.body.id}`);
  await page.getByRole('heading', { name: 'No provider' }).waitFor();
  await page.getByLabel('Message', { exact: true }).fill('Hello?');
  await page.getByRole('button', { name: 'Send' }).click();
  const err = page.getByTestId('composer-error');
  await err.filter({ hasText: 'gpt-unserved' }).waitFor();
  assert.match(await err.textContent(), /llm\.providers.*COPILOT_LLM__PROVIDERS/);
  assert.equal(await page.getByLabel('Message', { exact: true }).inputValue(), 'Hello?', 'the text is kept');
  assert.equal(await page.getByTestId('transcript').locator('.msg').count(), 0);
});

test('a reply already being written elsewhere: the 409 is shown, then that reply is followed and can be stopped', async () => {
  const page = alicePage;
  const token = (await sessionOf(page)).access;
  const agentId = (await api('GET', `/agent-configs?search=${encodeURIComponent(agentName)}`, token)).body.data[0].id;
  const c = await api('POST', '/conversations', token, { title: 'Busy', agent_config_id: agentId });
  await page.goto(`/admin/conversations/${c.body.id}`);
  await page.getByRole('heading', { name: 'Busy' }).waitFor();
  // another client starts a slow reply in the same conversation
  const other = await fetch(`${BASE}/api/v1/conversations/${c.body.id}/completions`, {
    method: 'POST', headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' },
    body: JSON.stringify({ content: 'Asked elsewhere [slow]', stream: true }),
  });
  assert.equal(other.status, 200);
  try {
    await page.getByLabel('Message', { exact: true }).fill('Me too.');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.getByTestId('composer-error').filter({ hasText: 'already being generated' }).waitFor();
    const t = page.getByTestId('transcript');
    await t.locator('.msg-user', { hasText: 'Asked elsewhere [slow]' }).waitFor();
    await page.getByTestId('streaming-reply').filter({ hasText: 'word1' }).waitFor();
    await page.getByRole('button', { name: 'Stop the reply' }).click();
    await t.locator('.msg-assistant[data-status=cancelled]').waitFor();
    assert.equal(await page.getByLabel('Message', { exact: true }).inputValue(), 'Me too.', 'the text is kept');
  } finally {
    await other.body.cancel().catch(() => {});
  }
});

test('token refresh: ahead of expiry, one at a time, shared across tabs; a revoked session returns to sign-in and back', async () => {
  const page = alicePage;
  // two refreshes at once: one request, both succeed, the new tokens work
  const result = await page.evaluate(async () => {
    const { refresh } = await import('/admin/js/api.js');
    const before = JSON.parse(sessionStorage.getItem('copilot.session'));
    const p1 = refresh();
    const p2 = refresh();
    await Promise.all([p1, p2]);
    const after = JSON.parse(sessionStorage.getItem('copilot.session'));
    return { same: p1 === p2, rotated: before.refresh !== after.refresh };
  });
  assert.deepEqual(result, { same: true, rotated: true });

  // the access token is refreshed ahead of its expiry, without any request failing first
  const before = (await sessionOf(page)).refresh;
  await page.evaluate(() => {
    const s = JSON.parse(sessionStorage.getItem('copilot.session'));
    s.expiresAt = Date.now() + 5_000;
    s.issuedAt = s.expiresAt - 30 * 60_000;
    sessionStorage.setItem('copilot.session', JSON.stringify(s));
  });
  await page.reload();
  await page.waitForFunction((old) => JSON.parse(sessionStorage.getItem('copilot.session')).refresh !== old, before);

  // a duplicated tab holds the same session: both refresh at once, one request rotates the
  // token and the other tab adopts the new pair instead of replaying the used one
  const twin = await page.context().newPage();
  twin.on('pageerror', (e) => pageErrors.push(e.message));
  await twin.goto('/admin/login');
  const copied = await sessionOf(page);
  await twin.evaluate((s) => sessionStorage.setItem('copilot.session', JSON.stringify(s)), copied);
  await twin.goto('/admin/');
  await twin.getByRole('heading', { name: 'Dashboard' }).waitFor();
  const race = (p) => p.evaluate(async () => { const { refresh } = await import('/admin/js/api.js'); await refresh(); return JSON.parse(sessionStorage.getItem('copilot.session')).refresh; });
  const [a, b] = await Promise.all([race(page), race(twin)]);
  assert.equal(a, b, 'both tabs hold the same new refresh token');
  assert.notEqual(a, copied.refresh);
  assert.equal((await api('GET', '/auth/me', (await sessionOf(twin)).access)).status, 200);
  assert.equal((await api('GET', '/auth/me', (await sessionOf(page)).access)).status, 200);
  await twin.close();
  await go(page, 'Dashboard');
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();

  // the session is revoked elsewhere (password change); the next request returns to sign-in
  await go(page, 'Projects');
  await page.getByRole('heading', { name: 'Projects' }).waitFor();
  const login = await api('POST', '/auth/login', null, { username: alice.username, password: alice.password });
  const changed = await api('POST', '/auth/change-password', login.body.access_token, { current_password: alice.password, new_password: alice.password + 'x' });
  assert.equal(changed.status, 200);
  alice.password += 'x';
  await page.getByLabel('Search projects').fill('Q3');
  await page.waitForURL(/\/admin\/login\?next=/);
  await page.getByText('Your session has ended').waitFor();
  await page.locator('input[name=username]').fill(alice.username);
  await page.locator('input[name=password]').fill(alice.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/admin\/projects\?search=Q3$/);
  await page.locator('tbody tr', { hasText: `Q3 RFPs ${run}` }).waitFor();
});

test('at 360px wide: menu, lists and the chat fit the screen', async () => {
  const page = await newPage({ width: 360, height: 740 });
  await signIn(page, 'admin', ADMIN_PASSWORD);
  const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
  assert.ok((await overflow()) <= 0, 'dashboard fits');
  const nav = page.getByRole('navigation', { name: 'Main' });
  assert.equal(await nav.isVisible(), false, 'the menu is folded');
  await page.getByRole('button', { name: 'Menu' }).click();
  await go(page, 'Users');
  await page.locator('tbody tr', { hasText: alice.username }).waitFor();
  assert.ok((await overflow()) <= 0, 'users list fits');
  await shot(page, 'mobile-users');
  await page.getByRole('button', { name: 'Menu' }).click();
  await go(page, 'Roles');
  await page.getByTestId('permission-matrix').waitFor();
  assert.ok((await overflow()) <= 0, 'roles page fits (the matrix scrolls inside its box)');
  await page.getByRole('button', { name: 'Menu' }).click();
  await go(page, 'Documents');
  await page.locator('tbody tr', { hasText: `security-${run}.md` }).waitFor();
  assert.ok((await overflow()) <= 0, 'documents page fits');
  await page.getByRole('button', { name: 'Menu' }).click();
  await go(page, 'Conversations');
  await page.getByRole('button', { name: 'New conversation' }).click();
  const d = dialog(page);
  await d.locator('input[name=title]').fill('Phone chat');
  await d.getByRole('button', { name: 'Start conversation' }).click();
  await page.getByRole('heading', { name: 'Phone chat' }).waitFor();
  await page.getByLabel('Message', { exact: true }).fill('Typed on a small screen.');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.getByTestId('transcript').getByText('Typed on a small screen.').waitFor();
  assert.ok((await overflow()) <= 0, 'chat fits');
  await shot(page, 'mobile-conversation');
});

test('usage: tokens per day as an SVG bar chart with a table, and each budget as a meter; light and dark pass axe-core', async () => {
  const token = await adminToken();
  const me = (await api('GET', '/auth/me', token)).body;
  const org = (await api('GET', `/organizations/${me.organization_id}`, token)).body;
  // a superuser gives the organization a monthly budget of its own
  const limits = { org_monthly_tokens: 1_000_000 };
  const put = await api('PUT', `/organizations/${org.id}`, token, { settings: { ...org.settings, limits } });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  const report = (await api('GET', '/usage', token)).body;
  const usedDays = report.data.filter((d) => d.total_tokens > 0);
  assert.ok(usedDays.length > 0, 'the conversation tests left usage');
  const budget = report.budgets.find((b) => b.name === 'org_monthly_tokens');
  assert.equal(budget.limit, 1_000_000);

  const found = [];
  for (const colorScheme of ['light', 'dark']) {
    const page = await newPage({ colorScheme });
    await signIn(page, 'admin', ADMIN_PASSWORD);
    await go(page, 'Usage');
    await page.getByRole('heading', { name: 'Usage', level: 1 }).waitFor();
    const chart = page.getByRole('img', { name: /^Tokens per day/ });
    await chart.waitFor();
    assert.equal(await chart.getAttribute('data-testid'), 'usage-chart');
    assert.match(await chart.locator('desc').textContent(), /tokens on \d+ of 30 days/);
    // one bar per day with usage, each with a height, and the same days in the table
    const bars = chart.locator('rect.chart-bar');
    assert.equal(await bars.count(), usedDays.length);
    for (const d of usedDays) {
      const bar = chart.locator(`rect.chart-bar[data-day="${d.key}"]`);
      assert.ok(Number(await bar.getAttribute('height')) > 0, `bar of ${d.key}`);
      assert.match(await bar.locator('title').textContent(), new RegExp(`${d.key}: [\\d,.\\s ]+ tokens`));
      const row = page.getByTestId('usage-table').locator('tbody tr', { hasText: d.key });
      assert.match(await row.textContent(), new RegExp(String(d.requests)));
    }
    const meter = page.getByRole('meter', { name: /monthly token budget/ });
    assert.equal(Number(await meter.getAttribute('max')), 1_000_000);
    assert.equal(Number(await meter.getAttribute('value')), budget.used);
    assert.match(await page.getByTestId('budget-org_monthly_tokens').textContent(), /of 1[,.\s ]?000[,.\s ]?000 tokens used/);
    const barFill = await bars.first().evaluate((el) => getComputedStyle(el).fill);
    assert.notEqual(barFill, 'rgb(0, 0, 0)', 'bars take the theme colour');
    for (const v of await axeViolations(page)) found.push(`${colorScheme} /admin/usage: ${v}`);
    if (colorScheme === 'light') await shot(page, 'usage');
  }
  assert.deepEqual(found, []);
});

test('dark colour scheme renders', async () => {
  const page = await newPage({ colorScheme: 'dark' });
  await signIn(page, 'admin', ADMIN_PASSWORD, { from: '/admin/agents' });
  await page.locator('tbody tr', { hasText: agentName }).waitFor();
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.notEqual(bg, 'rgb(245, 246, 248)');
  await shot(page, 'dark-agents');
});

/** axe-core's WCAG 2.1 A/AA violations of impact serious or critical on the page as it is now. */
async function axeViolations(page) {
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
  }));
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
}

test('audit log: filter by action, open an event\'s changes, export the filtered events as CSV', async () => {
  const token = await adminToken();
  const name = `audited ${run}`;
  assert.equal((await api('POST', '/projects', token, { name, description: 'for the audit log' })).status, 201);
  const page = await newPage();
  await signIn(page, 'admin', ADMIN_PASSWORD);
  await go(page, 'Audit log');
  await page.getByRole('heading', { name: 'Audit log' }).waitFor();
  await page.locator('tbody tr').first().waitFor();
  await page.getByLabel('Action', { exact: true }).selectOption('project.create');
  await page.waitForURL(/action=project\.create/);
  const rows = page.locator('tbody tr');
  await page.waitForFunction(() => [...document.querySelectorAll('tbody tr')].every((r) => r.textContent.includes('project.create')));
  assert.ok(await rows.count() >= 1);
  await rows.first().getByRole('button', { name: /^Details of project.create/ }).click();
  const d = dialog(page);
  await d.getByRole('cell', { name: name, exact: true }).waitFor();
  assert.ok((await d.textContent()).includes('127.0.0.1'), 'the client address is shown');
  assert.deepEqual(await axeViolations(page), []);
  await shot(page, 'audit-event');
  await d.locator('.form-actions').getByRole('button', { name: 'Close' }).click();

  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export CSV' }).click()]);
  assert.match(download.suggestedFilename(), /^audit-events-\d{4}-\d{2}-\d{2}\.csv$/);
  const csv = fs.readFileSync(await download.path(), 'utf8').split('\r\n');
  assert.equal(csv[0], 'id,at,organization_id,actor_user_id,actor_api_key_id,action,target_type,target_id,ip,user_agent,changes');
  const body = csv.slice(1).filter(Boolean);
  assert.ok(body.length >= 1 && body.every((l) => l.includes(',project.create,')), 'only the filtered events');
  assert.ok(body.some((l) => l.includes(name)), 'the changes are in the export');
  await shot(page, 'audit-log');
  // members have no audit log
  const member = await newPage();
  await signIn(member, alice.username, alice.password);
  assert.equal(await member.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Audit log' }).count(), 0);
});

test('every page passes axe-core (WCAG 2.1 A and AA: nothing serious or critical), light and dark', async () => {
  const token = await adminToken();
  const conversations = await api('GET', '/conversations?limit=1', token);
  const pages = ['/admin/', '/admin/users', '/admin/organizations', '/admin/roles', '/admin/projects',
    '/admin/agents', '/admin/documents', '/admin/conversations', '/admin/api-keys', '/admin/audit', '/admin/usage'];
  if (conversations.body.data.length) pages.push(`/admin/conversations/${conversations.body.data[0].id}`);
  const found = [];
  for (const colorScheme of ['light', 'dark']) {
    const page = await newPage({ colorScheme });
    await page.goto('/admin/login');
    await page.locator('input[name=username]').waitFor();
    for (const v of await axeViolations(page)) found.push(`${colorScheme} /admin/login: ${v}`);
    await signIn(page, 'admin', ADMIN_PASSWORD);
    for (const p of pages) {
      await page.goto(p);
      await page.locator('header.topbar').waitFor();
      await page.waitForLoadState('networkidle');
      await page.waitForTimeout(200); // let the page's own rendering settle
      for (const v of await axeViolations(page)) found.push(`${colorScheme} ${p}: ${v}`);
    }
  }
  assert.deepEqual(found, []);
});

test('the API docs render under their CSP', async () => {
  const page = await newPage();
  await page.goto('/docs');
  await page.locator('.opblock').first().waitFor();
  assert.ok(await page.locator('.opblock').count() > 50, 'every operation is listed');
  await shot(page, 'api-docs');
});

test('no script errors or CSP violations on any page', () => {
  assert.deepEqual(pageErrors, []);
});
