#!/usr/bin/env python3
# `matq serve` of one artifact: start it, wait until /v1/models answers, POST one greedy /v1/completions (16 tokens),
# then print the server's VmHWM and VmRSS from /proc and stop it. Usage: serve-hwm.py MATQ ARTIFACT BITS [PORT]
import json, os, signal, subprocess, sys, time, urllib.request

matq, artifact, bits = sys.argv[1], sys.argv[2], sys.argv[3]
port = int(sys.argv[4]) if len(sys.argv) > 4 else 8391
t0 = time.time()
p = subprocess.Popen([matq, "serve", "--model", artifact, "--tokenizer", "models/tiny", "--bits", bits, "--port", str(port)])
base = f"http://127.0.0.1:{port}"
try:
    while True:
        if p.poll() is not None: sys.exit(f"serve exited with {p.returncode} before answering")
        try:
            urllib.request.urlopen(base + "/v1/models", timeout=2).read(); break
        except Exception: time.sleep(0.5)
    print(f"ready after {time.time() - t0:.1f} s", flush=True)
    body = json.dumps({"prompt": "Fellow citizens", "max_tokens": 16, "temperature": 0}).encode()
    req = urllib.request.Request(base + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    t1 = time.time()
    reply = json.loads(urllib.request.urlopen(req, timeout=120).read())
    print(f"completion in {time.time() - t1:.1f} s: {reply['usage']}", flush=True)
    with open(f"/proc/{p.pid}/status") as f:
        for line in f:
            if line.startswith(("VmHWM", "VmRSS")): print("server " + line.strip(), flush=True)
finally:
    p.send_signal(signal.SIGINT)
    try: p.wait(20)
    except subprocess.TimeoutExpired: p.kill()
