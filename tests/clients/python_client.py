"""Python's http.client and requests against `lmpress serve`
(scripts/test-serve-clients.sh starts the server and sets the environment)."""
import http.client
import json
import os
import sys

import requests

PORT = int(os.environ["LMPRESS_PORT"])
KEY = os.environ["LMPRESS_API_KEY"]
EXPECTED = os.environ["LMPRESS_EXPECTED"]
AUTH = {"Authorization": f"Bearer {KEY}"}
BASE = f"http://127.0.0.1:{PORT}"


def check(ok, what):
    if not ok:
        print(f"python client: FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"python client: ok: {what}")


body = {"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0, "ignore_eos": True}

# http.client, one body.
conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
conn.request("POST", "/v1/completions", json.dumps(body), {**AUTH, "Content-Type": "application/json"})
r = conn.getresponse()
j = json.loads(r.read())
check(r.status == 200 and j["choices"][0]["text"] == EXPECTED, "http.client: greedy text equals lmpress generate's")

# http.client, server-sent events read line by line.
conn.request("POST", "/v1/completions", json.dumps({**body, "stream": True}), {**AUTH, "Content-Type": "application/json"})
r = conn.getresponse()
check(r.getheader("Content-Type", "").startswith("text/event-stream"), "http.client: the stream is text/event-stream")
text, done = "", False
for line in r:
    line = line.decode().strip()
    if not line.startswith("data: "):
        continue
    if line == "data: [DONE]":
        done = True
        break
    text += json.loads(line[6:])["choices"][0]["text"]
check(done and text == EXPECTED, "http.client: the streamed text equals lmpress generate's")

# requests.
s = requests.Session()
# A refusal, then a stream on the same keep-alive connection: requests sends
# the body apart from the headers, so a server that refused without reading
# the body would parse it as the next request (a 400 half the time).
for _ in range(6):
    r = s.post(f"{BASE}/v1/completions", json=body)
    check(r.status_code == 401 and r.json()["error"]["code"] == 401, "requests: no key is 401")
    r = s.post(f"{BASE}/v1/completions", json={**body, "stream": True}, headers=AUTH, stream=True)
    text = ""
    for line in r.iter_lines():
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            text += json.loads(line[6:])["choices"][0]["text"]
    check(r.status_code == 200 and text == EXPECTED,
          f"requests: the streamed text equals lmpress generate's (status {r.status_code}, got {text!r}, want {EXPECTED!r})")
r = s.post(f"{BASE}/v1/completions", data="{oops", headers=AUTH)
check(r.status_code == 400 and "JSON" in r.json()["error"]["message"], "requests: malformed JSON is 400")
r = s.post(f"{BASE}/tokenize", json={"content": "Once upon a time"}, headers=AUTH)
ids = r.json()["tokens"]
r = s.post(f"{BASE}/detokenize", json={"tokens": ids}, headers=AUTH)
check(r.json()["content"] == "Once upon a time", "requests: tokenize then detokenize gives the text back")
r = s.get(f"{BASE}/health")
check(r.status_code == 200 and r.json()["status"] == "ok", "requests: /health answers without the key")
