// The REST client: tokens in sessionStorage, access token refreshed before it expires with the
// rotating refresh token (one refresh in flight at a time), 401 → one refresh and retry, then
// the session is over.

const KEY = 'copilot.session';
const BASE = '/api/v1';

export class ApiError extends Error {
  constructor(status, detail, retryAfter) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }
}

let session = load();
let refreshing = null;
let timer = null;
const expiredListeners = new Set();
const busyListeners = new Set();
let inflight = 0;

function load() {
  try { return JSON.parse(sessionStorage.getItem(KEY)); } catch { return null; }
}

function save(s) {
  session = s;
  if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
  else sessionStorage.removeItem(KEY);
  schedule();
}

function fromTokens(t) {
  const now = Date.now();
  return { access: t.access_token, refresh: t.refresh_token, issuedAt: now, expiresAt: now + t.expires_in * 1000 };
}

/** Refresh a little before expiry: a fifth of the lifetime early, at most one minute. */
function schedule() {
  clearTimeout(timer);
  if (!session) return;
  const ttl = session.expiresAt - session.issuedAt;
  const early = Math.min(60_000, ttl / 5);
  const ms = Math.max(0, session.expiresAt - Date.now() - early);
  timer = setTimeout(() => { refresh().catch(() => {}); }, Math.min(ms, 2 ** 31 - 1));
}
schedule();

export const hasSession = () => !!session;
export const onExpired = (fn) => expiredListeners.add(fn);
export const onBusy = (fn) => busyListeners.add(fn);

function busy(delta) {
  inflight += delta;
  for (const fn of busyListeners) fn(inflight > 0);
}

function expire(detail) {
  if (!session) return;
  save(null);
  for (const fn of expiredListeners) fn(detail);
}

async function detailOf(r) {
  try {
    const j = await r.json();
    if (j && typeof j.detail === 'string') return j.detail;
  } catch { /* not JSON */ }
  return `${r.status} ${r.statusText || 'error'}`.trim();
}

// Tabs of one browser may hold the same session (a duplicated tab copies sessionStorage). Each
// refresh token works once, so refreshes are serialized across tabs with a Web Lock and the
// new pair is announced on a BroadcastChannel to tabs that still hold the old one.
const channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel('copilot-session') : null;
if (channel) {
  channel.onmessage = ({ data }) => {
    if (!data || !session || session.refresh !== data.from) return;
    if (data.type === 'rotated') save(data.session);
    else if (data.type === 'ended') expire('You signed out in another tab.');
  };
}
const withLock = (fn) => (navigator.locks ? navigator.locks.request('copilot-refresh', fn) : fn());

/** Exchange the refresh token for a new pair. Concurrent callers share one request. */
export function refresh() {
  if (refreshing) return refreshing;
  const rt = session && session.refresh;
  if (!rt) return Promise.reject(new ApiError(401, 'Not signed in'));
  refreshing = (async () => {
    try {
      await withLock(async () => {
        await new Promise((r) => setTimeout(r, 20)); // let a rotation announced by another tab arrive
        if (!session || session.refresh !== rt) return; // another tab already rotated it
        let r;
        try {
          r = await fetch(BASE + '/auth/refresh', {
            method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refresh_token: rt }),
          });
        } catch {
          setTimeout(() => { if (session && session.refresh === rt) schedule(); }, 15_000);
          throw new ApiError(0, 'Cannot reach the server.');
        }
        if (!r.ok) {
          const d = await detailOf(r);
          if (r.status < 500 && session && session.refresh === rt) expire('Your session has ended. Please sign in again.');
          throw new ApiError(r.status, d);
        }
        const next = fromTokens(await r.json());
        if (session && session.refresh === rt) {
          save(next);
          if (channel) channel.postMessage({ type: 'rotated', from: rt, session: next });
        }
      });
      if (!session) throw new ApiError(401, 'Not signed in');
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

function qs(query) {
  if (!query) return '';
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? '?' + s : '';
}

/**
 * One request with the session's token: refreshed first when it is about to expire, and once more
 * on a 401 (unless another tab or request refreshed it meanwhile). Resolves with a 2xx Response;
 * throws ApiError otherwise (an AbortError from opts.signal as it is).
 */
async function send(method, path, { body, query, accept, headers: extra, signal, cache }) {
  const url = BASE + path + qs(query);
  if (session && session.expiresAt - Date.now() < 10_000) await refresh().catch(() => {});
  for (let attempt = 0; ; attempt++) {
    const token = session && session.access;
    const headers = { accept, ...(extra || {}) };
    if (token) headers.authorization = 'Bearer ' + token;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let r;
    busy(1);
    try {
      r = await fetch(url, { method, headers, signal, cache, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      if (e && e.name === 'AbortError') throw e;
      throw new ApiError(0, 'Cannot reach the server. Check that it is running and try again.');
    } finally {
      busy(-1);
    }
    if (r.status === 401 && token) {
      const detail = await detailOf(r);
      if (attempt === 0) {
        if (session && session.access !== token) continue; // refreshed meanwhile
        try { await refresh(); continue; } catch { /* falls through */ }
      }
      expire('Your session has ended. Please sign in again.');
      throw new ApiError(401, detail);
    }
    if (!r.ok) throw new ApiError(r.status, await detailOf(r), r.headers.get('retry-after'));
    return r;
  }
}

/** api('GET', '/users', {query: {limit: 5}}) → parsed JSON (null for 204). Throws ApiError. */
export async function api(method, path, { body, query } = {}) {
  const r = await send(method, path, { body, query, accept: 'application/json' });
  if (r.status === 204) return null;
  const text = await r.text();
  return text ? JSON.parse(text) : null;
}

/**
 * A request whose answer is read as a stream (Server-Sent Events): like api(), with the same
 * token refresh and errors, but resolves with the Response (2xx) for the caller to read.
 * opts.headers are added (e.g. Last-Event-ID); opts.signal aborts it.
 */
export function apiStream(method, path, { body, query, headers, signal } = {}) {
  return send(method, path, { body, query, headers, signal, accept: 'text/event-stream', cache: 'no-store' });
}

/**
 * Upload a multipart form with XMLHttpRequest, which reports upload progress (fetch does not):
 * onProgress(fraction 0..1) as bytes go out. Same token refresh and errors as api().
 */
export async function apiUpload(path, form, { onProgress } = {}) {
  if (session && session.expiresAt - Date.now() < 10_000) await refresh().catch(() => {});
  for (let attempt = 0; ; attempt++) {
    const token = session && session.access;
    busy(1);
    let r;
    try {
      r = await new Promise((resolve, reject) => {
        const xhr = new XMLHttpRequest();
        xhr.open('POST', BASE + path);
        xhr.setRequestHeader('accept', 'application/json');
        if (token) xhr.setRequestHeader('authorization', 'Bearer ' + token);
        if (onProgress) {
          xhr.upload.addEventListener('progress', (e) => { if (e.lengthComputable && e.total) onProgress(e.loaded / e.total); });
          xhr.upload.addEventListener('load', () => onProgress(1));
        }
        xhr.addEventListener('load', () => resolve({ status: xhr.status, text: xhr.responseText }));
        xhr.addEventListener('error', () => reject(new ApiError(0, 'Cannot reach the server. Check that it is running and try again.')));
        xhr.addEventListener('abort', () => reject(new ApiError(0, 'The upload was interrupted.')));
        xhr.send(form);
      });
    } finally {
      busy(-1);
    }
    let json = null;
    try { json = r.text ? JSON.parse(r.text) : null; } catch { /* not JSON */ }
    const detail = json && typeof json.detail === 'string' ? json.detail : `${r.status} error`;
    if (r.status === 401 && token) {
      if (attempt === 0) {
        if (session && session.access !== token) continue;
        try { await refresh(); continue; } catch { /* falls through */ }
      }
      expire('Your session has ended. Please sign in again.');
      throw new ApiError(401, detail);
    }
    if (r.status < 200 || r.status >= 300) throw new ApiError(r.status, detail);
    return json;
  }
}

/** GET a file with the session's token → {blob, filename} (from Content-Disposition). */
export async function apiBlob(path) {
  if (session && session.expiresAt - Date.now() < 10_000) await refresh().catch(() => {});
  for (let attempt = 0; ; attempt++) {
    const token = session && session.access;
    let r;
    busy(1);
    try {
      r = await fetch(BASE + path, { headers: token ? { authorization: 'Bearer ' + token } : {} });
    } catch {
      throw new ApiError(0, 'Cannot reach the server. Check that it is running and try again.');
    } finally {
      busy(-1);
    }
    if (r.status === 401 && token && attempt === 0) {
      if (session && session.access !== token) continue;
      try { await refresh(); continue; } catch { /* falls through */ }
    }
    if (r.status === 401 && token) { expire('Your session has ended. Please sign in again.'); throw new ApiError(401, await detailOf(r)); }
    if (!r.ok) throw new ApiError(r.status, await detailOf(r));
    const cd = r.headers.get('content-disposition') || '';
    const star = /filename\*=UTF-8''([^;]+)/i.exec(cd);
    const plain = /filename="?([^";]+)"?/i.exec(cd);
    let filename = 'download';
    try { filename = star ? decodeURIComponent(star[1]) : (plain ? plain[1] : filename); } catch { /* keep the default */ }
    return { blob: await r.blob(), filename };
  }
}

/**
 * Reads Server-Sent Events from a Response body: calls onEvent({id, event, data}) for each event
 * (data parsed as JSON when it is JSON). Resolves when the body ends; rejects when it breaks.
 */
export async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let ev = { id: null, event: 'message', data: [] };
  const dispatch = () => {
    if (ev.data.length) {
      const raw = ev.data.join('\n');
      let data = raw;
      try { data = JSON.parse(raw); } catch { /* plain text */ }
      onEvent({ id: ev.id, event: ev.event, data });
    }
    ev = { id: null, event: 'message', data: [] };
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
      if (line === '') { dispatch(); continue; }
      if (line.startsWith(':')) continue; // keep-alive comment
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') ev.data.push(value);
      else if (field === 'event') ev.event = value;
      else if (field === 'id') ev.id = value;
    }
  }
}

export async function login(username, password) {
  let r;
  busy(1);
  try {
    r = await fetch(BASE + '/auth/login', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }),
    });
  } catch {
    throw new ApiError(0, 'Cannot reach the server. Check that it is running and try again.');
  } finally {
    busy(-1);
  }
  if (!r.ok) throw new ApiError(r.status, await detailOf(r), r.headers.get('retry-after'));
  save(fromTokens(await r.json()));
}

export async function logout() {
  const token = session && session.access;
  if (session && channel) channel.postMessage({ type: 'ended', from: session.refresh });
  save(null);
  if (!token) return;
  try {
    await fetch(BASE + '/auth/logout', { method: 'POST', headers: { authorization: 'Bearer ' + token } });
  } catch { /* the local session is gone anyway */ }
}

/** Fetch every page of a list (up to `max` rows). */
export async function listAll(path, query = {}, max = 500) {
  const rows = [];
  for (let skip = 0; skip < max; skip += 100) {
    const page = await api('GET', path, { query: { ...query, skip, limit: 100 } });
    rows.push(...page.data);
    if (!page.has_more) break;
  }
  return rows;
}
