// A small OpenAI-compatible chat-completions server for the browser tests (run.sh starts it on a
// free loopback port and prints `listening on http://127.0.0.1:PORT/v1`). What it answers depends
// on the last user message, so the tests can pick a behaviour by what they type:
//   contains "[slow]"  → a long reply, one word every 400 ms (time to press Stop)
//   contains "[error]" → HTTP 500 with an OpenAI-style error body
//   anything else      → a short reply in several chunks 250 ms apart, usage in the last chunk
import http from 'node:http';

export const REPLY = ['Here is ', 'a draft ', 'of the ', 'security ', 'section: ', 'data is encrypted ', 'at rest and in transit.'];
export const USAGE = { prompt_tokens: 42, completion_tokens: 17 };
export const ERROR = 'The mock provider is overloaded, try again later';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const chunk = (delta, finish = null, usage) => JSON.stringify({
  id: 'mock-1', object: 'chat.completion.chunk', model: 'gemini-pro',
  choices: [{ index: 0, delta, finish_reason: finish }], ...(usage ? { usage } : {}),
});

async function stream(res, pieces, delay) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const send = (data) => res.write(`data: ${data}\n\n`);
  send(chunk({ role: 'assistant' }));
  for (const p of pieces) {
    await sleep(delay);
    if (res.destroyed) return; // the client (copilot) went away: cancelled
    send(chunk({ content: p }));
  }
  await sleep(delay);
  // the last chunk carries finish_reason and the usage (stream_options.include_usage)
  res.write(`data: ${JSON.stringify({ id: 'mock-1', object: 'chat.completion.chunk', model: 'gemini-pro', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage: USAGE })}\n\n`);
  res.end('data: [DONE]\n\n');
}

const server = http.createServer((req, res) => {
  let raw = '';
  req.on('data', (d) => { raw += d; });
  req.on('end', async () => {
    if (req.method !== 'POST' || !req.url.endsWith('/chat/completions')) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'not found' } }));
      return;
    }
    let body = {};
    try { body = JSON.parse(raw); } catch { /* answered below */ }
    const users = (body.messages || []).filter((m) => m.role === 'user');
    const last = users.length ? String(users[users.length - 1].content) : '';
    try {
      if (last.includes('[error]')) {
        await sleep(150);
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: ERROR, type: 'server_error' } }));
      } else if (last.includes('[slow]')) {
        await stream(res, Array.from({ length: 60 }, (_, i) => `word${i + 1} `), 400);
      } else {
        await stream(res, REPLY, 250);
      }
    } catch { /* the connection closed */ }
  });
});

server.listen(0, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}/v1`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { server.close(); process.exit(0); });
