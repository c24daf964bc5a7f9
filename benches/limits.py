"""What one client can hold of copilot, measured on the release binary (README, Performance).

  python3 benches/limits.py target/release/copilot rss    # 8 parallel reads of 300 x 100k-char messages: peak RSS
  python3 benches/limits.py target/release/copilot 1100   # 1,100 half-open connections: /status latency, closes

SERVER_NOFILE=soft,hard sets the server's open-file limit (e.g. 1024,1024).
"""
import json, os, socket, subprocess, sys, tempfile, threading, time, urllib.request, resource
BIN = sys.argv[1]
MODE = sys.argv[2]
with socket.socket() as _s:
    _s.bind(("127.0.0.1", 0))
    PORT = _s.getsockname()[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],)*2)
d = tempfile.mkdtemp()
cfg = os.path.join(d, "copilot.toml")
open(cfg, "w").write(f'[server]\nbind = "127.0.0.1:{PORT}"\n[auth]\npbkdf2_iterations = 1000\n[bootstrap]\nadmin_password = "admin-password-1"\n[log]\nlevel = "warn"\n')
lim = os.environ.get("SERVER_NOFILE")
def pre():
    if lim:
        soft, hard = map(int, lim.split(","))
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
p = subprocess.Popen([BIN, "serve", "--config", cfg], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, preexec_fn=pre)
for line in p.stdout:
    if line.startswith("Ready"): break
threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
base = f"http://127.0.0.1:{PORT}/api/v1"
def req(method, path, body=None, token=None, timeout=60):
    r = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(), headers={"content-type": "application/json"})
    if token: r.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(r, timeout=timeout) as resp:
        return resp.status, resp.read()
def hwm():
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith(("VmHWM", "VmRSS")): print("  ", l.strip())
try:
    if MODE == "rss":
        _, b = req("POST", "/auth/login", {"username": "admin", "password": "admin-password-1"})
        tok = json.loads(b)["access_token"]
        _, b = req("POST", "/conversations", {"title": "big"}, tok)
        cid = json.loads(b)["id"]
        for i in range(300):
            req("POST", f"/conversations/{cid}/messages", {"role": "user", "content": (f"{i} " + "x" * 100_000)[:100_000]}, tok)
        print("after inserting 300 x 100k messages:"); hwm()
        def get():
            s, b = req("GET", f"/conversations/{cid}", None, tok, timeout=300)
            assert s == 200 and len(json.loads(b)["messages"]) == 300
        for rnd in range(3):
            t0 = time.time()
            ts = [threading.Thread(target=get) for _ in range(8)]
            [t.start() for t in ts]; [t.join() for t in ts]
            print(f"round {rnd}: 8 parallel GET /conversations/{{id}} in {time.time()-t0:.2f}s")
        hwm()
    else:
        n = int(MODE)
        socks = []
        t0 = time.time()
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", PORT))
            s.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        print(f"opened {n} half-open connections in {time.time()-t0:.2f}s")
        for k in range(3):
            t0 = time.time()
            try:
                s, b = req("GET", "/status", timeout=10)
                print(f"/status -> {s} in {(time.time()-t0)*1000:.1f} ms")
            except Exception as e:
                print(f"/status -> {e!r} after {(time.time()-t0)*1000:.0f} ms")
        # how many are still open after the header-read timeout (default 30 s)
        time.sleep(32)
        closed = 0
        for s in socks:
            s.settimeout(0.01)
            try:
                if s.recv(10) == b"": closed += 1
            except socket.timeout: pass
            except OSError: closed += 1
        print(f"after 32 s: {closed} of {n} closed by the server")
        hwm()
finally:
    p.terminate(); p.wait()
