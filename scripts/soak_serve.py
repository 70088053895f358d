"""Soak test of `lmpress serve` (scripts/soak-serve.sh starts it): many
requests of every kind, 1000 connections opened and dropped, a client that
stops reading a stream, a full queue; the server must stay up, answer each
with the right status, end with an empty KV pool, and not grow in memory."""
import http.client
import json
import os
import random
import socket
import sys
import threading
import time

PORT = int(os.environ["LMPRESS_PORT"])
PID = int(os.environ["LMPRESS_PID"])
N = int(os.environ.get("SOAK_REQUESTS", "10000"))
THREADS = 16


def check(ok, what):
    print(f"soak: {'ok' if ok else 'FAILED'}: {what}", flush=True)
    if not ok:
        sys.exit(1)


def rss_mib():
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1


def metrics():
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    c.request("GET", "/metrics")
    out = {}
    for line in c.getresponse().read().decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.split()
            out[k] = float(v)
    return out


def drained(timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        m = metrics()
        if m["llamacpp:requests_processing"] == 0 and m["llamacpp:requests_deferred"] == 0 and m["lmpress:kv_blocks_used"] == 0:
            return True
        time.sleep(0.1)
    return False


WORDS = "once upon a time there was a little dog who liked to run in the park with friends".split()
BAD = ['{oops', '{"prompt": "a", "max_tokens": -1}', '{"prompt": "a", "temperature": -2}', '{"prompt": "a", "top_p": 3}',
       '{"prompt": "a", "model": "nope"}', '{"prompt": 7}']
WANT_BAD = [400, 400, 400, 400, 404, 400]


def one(rng, counts):
    kind = rng.random()
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
    try:
        if kind < 0.1:
            i = rng.randrange(len(BAD))
            c.request("POST", "/v1/completions", BAD[i])
            r = c.getresponse()
            body = json.loads(r.read())
            key = "bad_ok" if r.status == WANT_BAD[i] and body["error"]["code"] == r.status else f"bad_{r.status}"
        else:
            prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 40)))
            body = {"prompt": prompt, "max_tokens": rng.randrange(1, 8), "temperature": rng.choice([0, 0.8])}
            stream = kind < 0.4
            if stream:
                body["stream"] = True
            if kind < 0.2:  # a stream the client abandons after its first event
                c.request("POST", "/v1/completions", json.dumps({**body, "max_tokens": 64}))
                r = c.getresponse()
                r.fp.readline()
                c.sock.close()
                key = "dropped"
            else:
                c.request("POST", "/v1/completions", json.dumps(body))
                r = c.getresponse()
                data = r.read()
                ok = r.status == 200 and (b"[DONE]" in data if stream else "choices" in json.loads(data))
                key = "ok" if ok else (f"status_{r.status}")
    except Exception as e:  # noqa: BLE001 - counted and reported
        key = f"exception {type(e).__name__}"
    finally:
        c.close()
    counts[key] = counts.get(key, 0) + 1


def run(n, seed):
    counts = {}
    lock = threading.Lock()
    todo = iter(range(n))

    def worker(k):
        rng = random.Random(seed * 1000 + k)
        local = {}
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                break
            one(rng, local)
        with lock:
            for key, v in local.items():
                counts[key] = counts.get(key, 0) + v

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return counts


t0 = time.time()
warm = max(N // 5, 100)
counts = run(warm, 1)
check(set(counts) <= {"ok", "bad_ok", "dropped"}, f"warm-up: {warm} requests {counts}")
check(drained(), "warm-up: the KV pool is empty again")
rss_warm = rss_mib()
counts = run(N - warm, 2)
check(set(counts) <= {"ok", "bad_ok", "dropped"}, f"{N - warm} more requests {counts}")
check(drained(), "the KV pool is empty again")
rss_end = rss_mib()
check(rss_end <= rss_warm * 1.10 + 16, f"no memory growth: RSS {rss_warm:.1f} MiB after {warm} requests, {rss_end:.1f} MiB after {N}")

# 1000 connections opened and dropped, some after half a request.
for i in range(1000):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    if i % 3 == 1:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro")
    elif i % 3 == 2:
        s.sendall(b"GET /health HTTP/1.1\r\n")
    s.close()
c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
c.request("GET", "/health")
check(c.getresponse().status == 200, "1000 connections opened and dropped: the server answers")

# A client that stops reading a long stream: a small receive buffer fills, the
# server's write times out and the request is cancelled.
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", PORT))
body = json.dumps({"prompt": "once upon a time", "max_tokens": 3000, "temperature": 0, "ignore_eos": True, "stream": True})
s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
s.recv(100)
# Bounded by the 3000 tokens (the whole stream may fit the socket buffers) plus the 10 s write timeout; a loaded
# 2-core machine needs more than 90 s for them.
check(drained(240), "a client that stops reading: its request ends, the pool is empty (client still connected)")
s.close()

# A full queue answers 503 (--max-queue 24, --parallel 2).
results = []
def burst():
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
    c.request("POST", "/v1/completions", json.dumps({"prompt": "the dog", "max_tokens": 48, "ignore_eos": True}))
    r = c.getresponse()
    r.read()
    results.append(r.status)
ts = [threading.Thread(target=burst) for _ in range(60)]
for t in ts:
    t.start()
for t in ts:
    t.join()
check(set(results) <= {200, 503} and 503 in results and 200 in results,
      f"a burst of 60 on 2 running + a queue of 24: {results.count(200)} answered, {results.count(503)} refused with 503")
check(drained(), "the KV pool is empty at the end")
m = metrics()
print(f"soak: {N} requests in {time.time() - t0:.0f} s; finished {m['lmpress:requests_finished_total']:.0f}, "
      f"cancelled {m['lmpress:requests_cancelled_total']:.0f}, preemptions {m['lmpress:preemptions_total']:.0f}")
