#!/usr/bin/env python3
"""spill-server with real clients, on loopback only: the `openai` Python package and curl against a
server this test starts (and stops). Checks: concurrent streamed requests each get the text of a
sequential greedy run; a client that goes away has its request cancelled and its KV blocks freed;
each bad request gets its 400 (or 404/405/413) with a JSON error naming the field; a full queue
answers 429 with Retry-After; /health, /v1/models, /metrics; SIGTERM finishes what runs, then exits 0.

usage: test_server.py SPILL_SERVER_BINARY MODEL.gguf [SPILL_BENCH_BINARY]   (exit 77 = skipped, reason printed)
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

SKIP = 77


def skip(why):
    print(f"SKIPPED: {why}")
    sys.exit(SKIP)


try:
    import openai
except ImportError:
    skip("the openai package is not installed (pip install openai)")

if len(sys.argv) not in (3, 4):
    print(__doc__)
    sys.exit(2)
BIN, MODEL = sys.argv[1], sys.argv[2]
BENCH = sys.argv[3] if len(sys.argv) == 4 else None
if not os.access(MODEL, os.R_OK):
    skip(f"{MODEL} is not there")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


class Server:
    def __init__(self, *args):
        self.p = subprocess.Popen([BIN, "-m", MODEL, "--port", "0", "-t", "2", *args], stderr=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, text=True)
        self.log = []
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.p.stderr.readline()
            if not line:
                break
            self.log.append(line)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        else:
            line = ""
        if not hasattr(self, "port"):
            self.p.kill()
            raise SystemExit("FAIL the server did not start:\n" + "".join(self.log))
        threading.Thread(target=self._drain, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}"

    def _drain(self):
        for line in self.p.stderr:
            self.log.append(line)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        return self.p.wait(timeout=60)


def http(url, body=None, method=None):
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def metric(srv, name):
    _, _, text = http(srv.url + "/metrics")
    m = re.search(r"^" + re.escape(name) + r" ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else None


PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben went to the park", "One day, a big bird",
           "Tom had a red ball", "The sun was hot and", "A cat sat on", "There was a girl who"]

srv = Server("--parallel", "4", "--ctx-size", "256", "--kv-block", "16")
try:
    # /health, /v1/models, /metrics
    st, hd, body = http(srv.url + "/health")
    check(st == 200 and json.loads(body)["status"] == "ok", "/health answers ok")
    st, hd, body = http(srv.url + "/v1/models")
    check(st == 200 and json.loads(body)["data"][0]["id"] == os.path.basename(MODEL), "/v1/models lists the model")
    st, hd, body = http(srv.url + "/metrics")
    check(st == 200 and "# TYPE spill_requests_total counter" in body and "spill_kv_blocks{state=\"free\"}" in body
          and hd.get("Content-Type", "").startswith("text/plain"), "/metrics is Prometheus text")

    # the reference: each prompt alone, one after another, not streamed (curl)
    ref = {}
    for p in PROMPTS:
        out = subprocess.run(["curl", "-s", "-X", "POST", srv.url + "/v1/completions", "-H", "Content-Type: application/json",
                              "-d", json.dumps({"prompt": p, "max_tokens": 24, "temperature": 0})],
                             capture_output=True, text=True, timeout=120)
        r = json.loads(out.stdout)
        ref[p] = r["choices"][0]["text"]
        check(r["usage"]["completion_tokens"] > 0 and r["choices"][0]["finish_reason"] in ("length", "stop"),
              f"curl: a completion of {p!r} with usage and a finish reason")

    # eight streamed requests at once through the openai client: each the same text
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=120)
    got = {}

    def stream_one(p):
        text, finish = "", None
        for chunk in client.completions.create(model="x", prompt=p, max_tokens=24, temperature=0, stream=True):
            text += chunk.choices[0].text or ""
            finish = chunk.choices[0].finish_reason or finish
        got[p] = (text, finish)

    threads = [threading.Thread(target=stream_one, args=(p,)) for p in PROMPTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in PROMPTS:
        check(p in got and got[p][0] == ref[p] and got[p][1] in ("length", "stop"),
              f"openai, 8 streams at once: {p!r} gives the sequential text")
    # batching, measured over 8 long requests at once only (the requests before went one at a time; 150
    # tokens each keeps them overlapping even when the machine is busy and the threads start late)
    steps0, tokens0 = metric(srv, "spill_steps_total"), metric(srv, "spill_step_tokens_total")
    long_done = []

    def long_one(p):
        st, _, _ = http(srv.url + "/v1/completions", {"prompt": p, "max_tokens": 150, "temperature": 0})
        long_done.append(st)

    threads = [threading.Thread(target=long_one, args=(p,)) for p in PROMPTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    steps = metric(srv, "spill_steps_total") - steps0
    step_tokens = metric(srv, "spill_step_tokens_total") - tokens0
    check(long_done.count(200) == 8 and steps > 0 and step_tokens / steps > 1.5,
          f"steps held several sequences (mean {step_tokens / max(steps, 1):.2f} tokens over {steps:.0f} steps)")

    # chat through the openai client, whole and streamed
    msgs = [{"role": "user", "content": "Once upon a time"}]
    whole = client.chat.completions.create(model="x", messages=msgs, max_tokens=16, temperature=0)
    check(whole.choices[0].message.role == "assistant" and whole.choices[0].message.content and whole.usage.total_tokens > 0,
          "openai chat: an assistant message with usage")
    streamed = "".join(c.choices[0].delta.content or "" for c in
                       client.chat.completions.create(model="x", messages=msgs, max_tokens=16, temperature=0, stream=True))
    check(streamed == whole.choices[0].message.content, "openai chat: streamed equals whole")
    check(whole.model == os.path.basename(MODEL), f"the answer names the model that served it, not the one asked for "
          f"({whole.model!r})")
    # usage in a stream only when asked, in a last chunk with no choices (OpenAI's stream_options)
    chunks = list(client.chat.completions.create(model="x", messages=msgs, max_tokens=16, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    check(not chunks[-1].choices and chunks[-1].usage and chunks[-1].usage.total_tokens == whole.usage.total_tokens
          and all(c.usage is None for c in chunks[:-1]), "include_usage: a last chunk with the usage and no choices")
    check(all(getattr(c, "usage", None) is None for c in
              client.chat.completions.create(model="x", messages=msgs, max_tokens=4, temperature=0, stream=True)),
          "a stream without include_usage carries no usage")
    # content as text parts (joined by newlines) and the developer role (the system turn)
    def chat_text(m):
        return client.chat.completions.create(model="x", messages=m, max_tokens=12, temperature=0).choices[0].message.content
    plain = chat_text([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Once upon\na time"}])
    parts = chat_text([{"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
                       {"role": "user", "content": [{"type": "text", "text": "Once upon"}, {"type": "text", "text": "a time"}]}])
    check(parts == plain, "chat: text parts and the developer role read as one string and the system role")
    # stop sequences and seeds
    cut = ref[PROMPTS[0]]
    word = cut.split()[3] if len(cut.split()) > 3 else None
    if word:
        r = client.completions.create(model="x", prompt=PROMPTS[0], max_tokens=24, temperature=0, stop=[word])
        check(r.choices[0].text == cut[:cut.index(word)] and r.choices[0].finish_reason == "stop",
              f"a stop sequence ({word!r}) ends the text before it")
    a = client.completions.create(model="x", prompt=PROMPTS[1], max_tokens=16, temperature=0.9, seed=7).choices[0].text
    b = client.completions.create(model="x", prompt=PROMPTS[1], max_tokens=16, temperature=0.9, seed=7).choices[0].text
    check(a == b, "the same seed gives the same sampled text")

    # log probabilities: a completion's logprobs=N, a chat's logprobs + top_logprobs; greedy, so each
    # token is its first alternative; streamed the same as whole (stories260K writes ASCII: the tokens'
    # texts join to the text)
    r = client.completions.create(model="x", prompt=PROMPTS[0], max_tokens=24, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    n = r.usage.completion_tokens
    check(r.choices[0].text == ref[PROMPTS[0]] and "".join(lp.tokens) == r.choices[0].text
          and len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == n,
          "completion logprobs: one entry per generated token, their texts the text")
    check(all(x <= 0 for x in lp.token_logprobs) and all(len(d) == 3 for d in lp.top_logprobs)
          and all(abs(d[t] - x) < 1e-6 and abs(max(d.values()) - x) < 1e-6
                  for t, x, d in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs)),
          "completion logprobs: the chosen token is the likeliest of 3 alternatives, with the same log probability")
    toks, vals, offs = [], [], []
    for chunk in client.completions.create(model="x", prompt=PROMPTS[0], max_tokens=24, temperature=0, logprobs=3,
                                           stream=True):
        if chunk.choices and chunk.choices[0].logprobs:
            toks += chunk.choices[0].logprobs.tokens
            vals += chunk.choices[0].logprobs.token_logprobs
            offs += chunk.choices[0].logprobs.text_offset
    check(toks == lp.tokens and vals == lp.token_logprobs, "completion logprobs: streamed equals whole")
    check(lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(n)] and offs == lp.text_offset,
          "completion logprobs: text_offset is where each token's text begins, streamed or whole")
    st, _, body = http(srv.url + "/v1/completions", {"prompt": PROMPTS[0], "max_tokens": 4, "temperature": 0, "logprobs": 0})
    d = json.loads(body)["choices"][0]["logprobs"] if st == 200 else {}
    check(len(d.get("token_logprobs", [])) == 4 and d["top_logprobs"] == [{}] * 4,
          "completion logprobs=0: the chosen tokens' only")

    # echo, as lm-evaluation-harness scores a continuation: the text and the log probabilities begin with
    # the prompt's (the first token's null); a prompt that is a greedy run's prompt and text gets the
    # log probabilities that run's tokens had (one position's logits, computed in a prompt or a decode
    # step, are the same bits); max_tokens 0 generates nothing; token ids are echoed as their texts
    n_p = r.usage.prompt_tokens
    e = client.completions.create(model="x", prompt=PROMPTS[0], max_tokens=24, temperature=0, logprobs=3, echo=True)
    el = e.choices[0].logprobs
    check(e.choices[0].text == PROMPTS[0] + ref[PROMPTS[0]] and e.usage.prompt_tokens == n_p
          and len(el.tokens) == len(el.token_logprobs) == len(el.top_logprobs) == len(el.text_offset) == n_p + n
          and el.token_logprobs[0] is None and el.top_logprobs[0] is None
          and el.tokens[n_p:] == lp.tokens and el.token_logprobs[n_p:] == lp.token_logprobs
          and el.text_offset == [sum(len(t) for t in el.tokens[:i]) for i in range(n_p + n)],
          "echo: the prompt's text and tokens first, the first one's log probability null")
    check(all(x <= 0 and len(d) == 3 and abs(max(d.values()) - d.get(t, max(d.values()))) < 1e-6
              and (t not in d or abs(d[t] - x) < 1e-6)
              for t, x, d in zip(el.tokens[1:], el.token_logprobs[1:], el.top_logprobs[1:])),
          "echo: each prompt token's log probability and 3 alternatives, its own the same where listed")
    f = client.completions.create(model="x", prompt=PROMPTS[0] + ref[PROMPTS[0]], max_tokens=0, logprobs=1, echo=True)
    fl = f.choices[0].logprobs
    check(f.choices[0].text == PROMPTS[0] + ref[PROMPTS[0]] and f.usage.completion_tokens == 0
          and f.choices[0].finish_reason == "length" and fl.tokens[n_p:] == lp.tokens
          and max(abs(a - b) for a, b in zip(fl.token_logprobs[n_p:], lp.token_logprobs)) < 1e-5,
          "echo with max_tokens 0: a greedy run's text as a prompt gets that run's log probabilities")
    st, _, body = http(srv.url + "/v1/completions", {"prompt": [1, 300, 301, 302], "max_tokens": 0, "logprobs": 2,
                                                     "echo": True})
    d = json.loads(body)["choices"][0] if st == 200 else {}
    # echoed as the tokenizer detokenizes them (for a GGUF, as llama.cpp does: the BOS gives no text and the
    # space after it stays, so here the text is the tokens' texts joined)
    check(st == 200 and len(d["logprobs"]["tokens"]) == 4 and "".join(d["logprobs"]["tokens"]) == d["text"]
          and d["logprobs"]["token_logprobs"][0] is None and all(x < 0 for x in d["logprobs"]["token_logprobs"][1:]),
          "echo of token ids: their detokenized text, and their log probabilities")
    # without the BOS, llama.cpp's detokenize drops SentencePiece's first space, which the tokens' texts have
    st, _, body = http(srv.url + "/v1/completions", {"prompt": [300, 301, 302], "max_tokens": 0, "logprobs": 0,
                                                     "echo": True})
    d = json.loads(body)["choices"][0] if st == 200 else {}
    check(st == 200 and "".join(d["logprobs"]["tokens"]).startswith(" ")
          and d["text"] == "".join(d["logprobs"]["tokens"])[1:],
          "echo of token ids without a BOS: SentencePiece's first space dropped, as the tokenizer detokenizes")
    text, toks, vals, offs = "", [], [], []
    for chunk in client.completions.create(model="x", prompt=PROMPTS[0], max_tokens=24, temperature=0, logprobs=3,
                                           echo=True, stream=True):
        if chunk.choices:
            text += chunk.choices[0].text
        if chunk.choices and chunk.choices[0].logprobs:
            toks += chunk.choices[0].logprobs.tokens
            vals += chunk.choices[0].logprobs.token_logprobs
            offs += chunk.choices[0].logprobs.text_offset
    check(text == e.choices[0].text and toks == el.tokens and vals == el.token_logprobs and offs == el.text_offset,
          "echo: streamed equals whole")
    e = client.completions.create(model="x", prompt=PROMPTS[0], max_tokens=24, temperature=0, echo=True)
    check(e.choices[0].text == PROMPTS[0] + ref[PROMPTS[0]] and e.choices[0].logprobs is None,
          "echo without logprobs: the text only")
    # the prompt back and nothing asked of the model: answered without a request to the scheduler
    before = metric(srv, "spill_requests_total")
    e = client.completions.create(model="x", prompt=PROMPTS[1], max_tokens=0, echo=True)
    chunks = [c.choices[0].text for c in client.completions.create(model="x", prompt=PROMPTS[1], max_tokens=0,
                                                                   echo=True, stream=True) if c.choices]
    check(e.choices[0].text == PROMPTS[1] and e.choices[0].finish_reason == "length"
          and e.usage.completion_tokens == 0 and e.usage.prompt_tokens > 0 and "".join(chunks) == PROMPTS[1]
          and metric(srv, "spill_requests_total") == before,
          "echo with max_tokens 0 and no logprobs: the prompt back, whole and streamed, without the model")

    # logit_bias: +100 on one token makes it the only one written (sampled, in a chat too), -100 bans it
    forced = client.completions.create(model="x", prompt=PROMPTS[2], max_tokens=8, temperature=0.9, seed=3,
                                       logit_bias={"301": 100}, logprobs=0)
    ft = forced.choices[0].logprobs.tokens
    chat_forced = client.chat.completions.create(model="x", messages=msgs, max_tokens=4, logit_bias={"301": 100})
    banned = client.completions.create(model="x", prompt=PROMPTS[2], max_tokens=8, temperature=0, logit_bias={"301": -100},
                                       logprobs=0)
    check(len(ft) == 8 and len(set(ft)) == 1 and forced.choices[0].text == ft[0] * 8
          and chat_forced.choices[0].message.content == ft[0] * 4
          and ft[0] not in banned.choices[0].logprobs.tokens,
          "logit_bias: +100 writes that token only, -100 never")
    # presence and frequency penalties (greedy): each pick is the best of the listed alternatives after
    # taking presence + count * frequency off those already written, while the log probabilities are
    # the model's own, so some picks are not the likeliest listed
    pen = client.completions.create(model="x", prompt=PROMPTS[2], max_tokens=24, temperature=0, logprobs=5,
                                    presence_penalty=1.0, frequency_penalty=0.5)
    pl, seen, ok, moved = pen.choices[0].logprobs, {}, True, 0
    for tok_, lp_, top_ in zip(pl.tokens, pl.token_logprobs, pl.top_logprobs):
        def score(t, v):
            return v - (1.0 + 0.5 * seen[t] if t in seen else 0.0)
        ok = ok and all(score(t, v) <= score(tok_, lp_) + 1e-4 for t, v in top_.items())
        moved += max(top_, key=top_.get) != tok_
        seen[tok_] = seen.get(tok_, 0) + 1
    check(ok and moved > 0 and len(pl.tokens) == 24 and pen.choices[0].text != ref[PROMPTS[2]][:len(pen.choices[0].text)],
          f"presence/frequency penalties: every pick the best after the penalties, {moved} of 24 not the likeliest")

    # the repetition penalty in vLLM's spelling (over the prompt and the text) and llama.cpp's (over the last
    # repeat_last_n tokens, 64 unless given; 0 turns it off): the text spill-generate writes with the same flags
    gen = os.path.join(os.path.dirname(BIN), "spill-generate")

    def cli(*flags):
        out = subprocess.run([gen, "-m", MODEL, "-p", PROMPTS[2], "-n", "24", "--temp", "0", "-t", "2", *flags],
                             capture_output=True, text=True, timeout=120)
        ok_ = out.returncode == 0 and out.stdout.startswith(PROMPTS[2]) and out.stdout.endswith("\n")
        return out.stdout[len(PROMPTS[2]):-1] if ok_ else f"spill-generate failed: {out.stderr[-300:]}"

    def rep(**extra):
        return client.completions.create(model="x", prompt=PROMPTS[2], max_tokens=24, temperature=0,
                                         extra_body=extra).choices[0].text
    rep_all, rep_8 = rep(repetition_penalty=1.5), rep(repeat_penalty=1.5, repeat_last_n=8)
    check(rep_all == cli("--repeat-penalty", "1.5", "--repeat-last-n", "-1") and rep_all != ref[PROMPTS[2]]
          and rep(repeat_penalty=1.5) == cli("--repeat-penalty", "1.5")
          and rep(repeat_penalty=1.5, repeat_last_n=1 << 24) == rep_all
          and rep_8 == cli("--repeat-penalty", "1.5", "--repeat-last-n", "8") and rep_8 not in (ref[PROMPTS[2]], rep_all)
          and rep(repeat_penalty=1.5, repeat_last_n=0) == ref[PROMPTS[2]] and rep(repetition_penalty=1) == ref[PROMPTS[2]],
          "repetition_penalty/repeat_penalty: spill-generate's text with the same --repeat-penalty/--repeat-last-n")
    rep_chat = client.chat.completions.create(model="x", messages=msgs, max_tokens=8, temperature=0,
                                              extra_body={"repetition_penalty": 1.3})
    check(rep_chat.choices[0].message.content != "", "repetition_penalty in a chat")

    whole = client.chat.completions.create(model="x", messages=msgs, max_tokens=16, temperature=0, logprobs=True,
                                           top_logprobs=2)
    content = whole.choices[0].logprobs.content
    check("".join(c.token for c in content) == whole.choices[0].message.content and len(content) == whole.usage.completion_tokens
          and all(c.bytes == list(c.token.encode()) and len(c.top_logprobs) == 2 and c.top_logprobs[0].token == c.token
                  and c.top_logprobs[0].logprob == c.logprob >= c.top_logprobs[1].logprob for c in content),
          "chat logprobs: each token with its bytes and 2 alternatives, itself the first")
    streamed = []
    for chunk in client.chat.completions.create(model="x", messages=msgs, max_tokens=16, temperature=0, logprobs=True,
                                                top_logprobs=2, stream=True):
        if chunk.choices and chunk.choices[0].logprobs:
            streamed += chunk.choices[0].logprobs.content
    check([(c.token, c.logprob) for c in streamed] == [(c.token, c.logprob) for c in content],
          "chat logprobs: streamed equals whole")
    plain_chat = client.chat.completions.create(model="x", messages=msgs, max_tokens=4, temperature=0)
    check(plain_chat.choices[0].logprobs is None, "chat: no logprobs unless asked")

    # a client that goes away: its request is cancelled (each of its n choices), its blocks freed
    for n in (1, 2):
        cancelled0 = metric(srv, "spill_requests_cancelled_total")
        proc = subprocess.Popen(["curl", "-sN", "-X", "POST", srv.url + "/v1/completions", "-H", "Content-Type: application/json",
                                 "-d", json.dumps({"prompt": PROMPTS[2], "max_tokens": 200, "temperature": 0, "stream": True, "n": n})],
                                stdout=subprocess.PIPE, text=True)
        for _ in range(6):
            proc.stdout.readline()  # a few events arrived
        proc.kill()
        proc.wait()
        deadline = time.time() + 20
        while time.time() < deadline and metric(srv, "spill_requests_cancelled_total") < cancelled0 + n:
            time.sleep(0.1)
        check(metric(srv, "spill_requests_cancelled_total") == cancelled0 + n,
              f"n={n}: a client that went away cancelled its request")
        deadline = time.time() + 10
        used = None
        while time.time() < deadline:
            _, _, text = http(srv.url + "/metrics")
            used = int(re.search(r'spill_kv_blocks\{state="used"\} (\d+)', text).group(1))
            if used == 0:
                break
            time.sleep(0.1)
        check(used == 0, f"n={n}: its KV blocks are free again")

    # n: choices of one prompt, choice i sampled with seed + i (the text that seed gives alone); the prompt
    # computed once, the other choices sharing its KV blocks; usage counts the prompt once
    p = "Lily and Ben went to the park. They saw a big dog and a little cat."
    alone = [client.completions.create(model="x", prompt=p, max_tokens=16, temperature=1.0, seed=40 + i, logprobs=0)
             for i in range(3)]
    reused0 = metric(srv, "spill_prompt_tokens_reused_total")
    r = client.completions.create(model="x", prompt=p, max_tokens=16, temperature=1.0, seed=40, n=3, best_of=3)
    reused = metric(srv, "spill_prompt_tokens_reused_total") - reused0
    check([c.index for c in r.choices] == [0, 1, 2] and [c.text for c in r.choices] == [a.choices[0].text for a in alone],
          "n=3: choice i is the text seed + i gives alone")
    check(len({a.choices[0].text for a in alone}) > 1, "n=3: the seeds give different texts")
    check(r.usage.prompt_tokens == alone[0].usage.prompt_tokens
          and r.usage.completion_tokens == sum(a.usage.completion_tokens for a in alone),
          f"n=3: usage counts the prompt once and every choice's tokens ({r.usage})")
    check(reused >= 2 * (alone[0].usage.prompt_tokens - 1) and alone[0].usage.prompt_tokens > 16,
          f"n=3: the other two choices shared the prompt's positions ({reused:.0f})")
    # best_of 3, n 2: the same three sequences, the two with the highest mean log probability a token
    # sent, likeliest first (their log probabilities only when asked); usage counts all three
    mean = [sum(a.choices[0].logprobs.token_logprobs) / len(a.choices[0].logprobs.token_logprobs) for a in alone]
    rank = sorted(range(3), key=lambda i: -mean[i])
    r = client.completions.create(model="x", prompt=p, max_tokens=16, temperature=1.0, seed=40, n=2, best_of=3)
    check([c.text for c in r.choices] == [alone[i].choices[0].text for i in rank[:2]]
          and [c.index for c in r.choices] == [0, 1] and all(c.logprobs is None for c in r.choices),
          f"best_of=3, n=2: the two likeliest a token of the three, likeliest first (means {[round(x, 3) for x in mean]})")
    check(r.usage.completion_tokens == sum(a.usage.completion_tokens for a in alone), "best_of=3: usage counts all three")
    r = client.completions.create(model="x", prompt=p, max_tokens=16, temperature=1.0, seed=40, best_of=3, logprobs=0)
    check(r.choices[0].logprobs.token_logprobs == alone[rank[0]].choices[0].logprobs.token_logprobs,
          "best_of=3 with logprobs: the chosen sequence's own")
    msgs = [{"role": "user", "content": "Tell me a story."}]
    one = client.chat.completions.create(model="x", messages=msgs, max_tokens=12, temperature=0)
    chunks = list(client.chat.completions.create(model="x", messages=msgs, max_tokens=12, temperature=0, n=2, stream=True,
                                                 stream_options={"include_usage": True}))
    per, fin = {}, {}
    for ch in chunks:
        for c in ch.choices:
            per[c.index] = per.get(c.index, "") + (c.delta.content or "")
            fin[c.index] = c.finish_reason or fin.get(c.index)
    with_usage = [i for i, ch in enumerate(chunks) if ch.usage]
    check(per == {0: one.choices[0].message.content, 1: one.choices[0].message.content} and fin[0] and fin[1],
          "a streamed chat with n=2, greedy: both choices are the greedy text, each with its finish reason")
    check(with_usage == [len(chunks) - 1] and chunks[-1].usage.completion_tokens == 2 * one.usage.completion_tokens,
          "... and the usage comes once, last, with both choices' tokens")

    # bad requests: a 400 naming the field, as JSON
    def bad(path, body, status, param=None, method=None):
        st, hd, text = http(srv.url + path, body, method)
        try:
            err = json.loads(text)["error"]
        except Exception:
            err = {}
        ok = st == status and "message" in err and (param is None or err.get("param") == param)
        check(ok, f"{method or 'POST'} {path} {str(body)[:60]!r}: {status}" + (f" naming {param}" if param else "")
              + ("" if ok else f" (got {st}: {text[:200]})"))

    bad("/v1/completions", b"{not json", 400)
    bad("/v1/completions", {"prompt": "hi", "max_tokens": "ten"}, 400, "max_tokens")
    bad("/v1/completions", {"prompt": "hi", "temperature": 5}, 400, "temperature")
    bad("/v1/completions", {"prompt": "hi", "stop": [1, 2]}, 400, "stop")
    bad("/v1/completions", {"prompt": "hi", "stream": "yes"}, 400, "stream")
    bad("/v1/completions", {"prompt": "hi", "n": 65}, 400, "n")
    bad("/v1/completions", {"prompt": "hi", "n": 0}, 400, "n")
    bad("/v1/completions", {"max_tokens": 3}, 400, "prompt")
    bad("/v1/completions", {"prompt": "word " * 400}, 400, "prompt")  # longer than the context of 256
    bad("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages[0].role")
    bad("/v1/chat/completions", {"messages": "hi"}, 400, "messages")
    bad("/v1/completions", {"prompt": ["hi", "there"]}, 400, "prompt")
    # what spill-server does not do is refused, not ignored; at its "off" value it is taken
    bad("/v1/completions", {"prompt": "hi", "logprobs": 21}, 400, "logprobs")
    bad("/v1/completions", {"prompt": "hi", "logprobs": 2, "top_logprobs": 2}, 400, "top_logprobs")
    bad("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "logprobs": 2}, 400, "logprobs")
    bad("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}, 400, "top_logprobs")
    bad("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "echo": True}, 400, "echo")
    bad("/v1/completions", {"prompt": "hi", "echo": 1}, 400, "echo")
    bad("/v1/completions", {"prompt": "hi", "max_tokens": 0}, 400, "max_tokens")  # 0 only with echo
    bad("/v1/completions", {"prompt": "hi", "logit_bias": {"abc": 1}}, 400, "logit_bias")
    bad("/v1/completions", {"prompt": "hi", "logit_bias": {"1x": 1}}, 400, "logit_bias")
    bad("/v1/completions", {"prompt": "hi", "logit_bias": {"512": 1}}, 400, "logit_bias")  # the vocabulary is 512
    bad("/v1/completions", {"prompt": "hi", "logit_bias": {"-1": 1}}, 400, "logit_bias")
    bad("/v1/completions", {"prompt": "hi", "logit_bias": {"1": 100.5}}, 400, "logit_bias")
    bad("/v1/completions", {"prompt": "hi", "logit_bias": {"1": "up"}}, 400, "logit_bias")
    bad("/v1/completions", {"prompt": "hi", "logit_bias": {"7": 1, "07": 1}}, 400, "logit_bias")  # one token twice
    bad("/v1/completions", {"prompt": "hi", "logit_bias": [1, 2]}, 400, "logit_bias")
    bad("/v1/completions", {"prompt": "hi", "logit_bias": {str(i): 1 for i in range(1025)}}, 400, "logit_bias")
    bad("/v1/completions", {"prompt": "hi", "frequency_penalty": 2.5}, 400, "frequency_penalty")
    bad("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "presence_penalty": -3}, 400,
        "presence_penalty")
    bad("/v1/completions", {"prompt": "hi", "presence_penalty": "x"}, 400, "presence_penalty")
    bad("/v1/completions", {"prompt": "hi", "repetition_penalty": 0}, 400, "repetition_penalty")
    bad("/v1/completions", {"prompt": "hi", "repetition_penalty": 10.5}, 400, "repetition_penalty")
    bad("/v1/completions", {"prompt": "hi", "repetition_penalty": 1e-50}, 400, "repetition_penalty")
    bad("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "repeat_penalty": -1}, 400,
        "repeat_penalty")
    bad("/v1/completions", {"prompt": "hi", "repeat_penalty": "x"}, 400, "repeat_penalty")
    bad("/v1/completions", {"prompt": "hi", "repeat_penalty": 1.1, "repetition_penalty": 1.1}, 400, "repeat_penalty")
    bad("/v1/completions", {"prompt": "hi", "repeat_penalty": 1.1, "repeat_last_n": -2}, 400, "repeat_last_n")
    bad("/v1/completions", {"prompt": "hi", "repeat_penalty": 1.1, "repeat_last_n": 1.5}, 400, "repeat_last_n")
    bad("/v1/completions", {"prompt": "hi", "n": 3, "best_of": 2}, 400, "best_of")
    bad("/v1/completions", {"prompt": "hi", "best_of": 2, "stream": True}, 400, "best_of")
    bad("/v1/completions", {"prompt": "hi", "stream_options": {"include_usage": True}}, 400, "stream_options")
    bad("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}, 400,
        "tools")
    bad("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}},
        400, "response_format")
    bad("/v1/chat/completions", {"messages": [{"role": "tool", "content": "hi"}]}, 400, "messages[0].role")
    bad("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        400, "messages[0].content")
    st, _, _ = http(srv.url + "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1,
                                                       "logprobs": False, "top_logprobs": 0})
    check(st == 200, "chat: logprobs false with top_logprobs 0 (their off values) is taken")
    st, _, _ = http(srv.url + "/v1/completions", {"prompt": "hi", "max_tokens": 1, "logprobs": False})
    check(st == 200, "completion: logprobs false is taken as off")
    st, _, _ = http(srv.url + "/v1/completions", {"prompt": "hi", "max_tokens": 1, "logprobs": None, "echo": False,
                                                  "logit_bias": {}, "frequency_penalty": 0, "best_of": 1})
    check(st == 200, "those fields at their off values are taken")
    bad("/v1/nothing", {"prompt": "hi"}, 404)
    bad("/v1/completions", None, 405, method="GET")
    st, hd, _ = http(srv.url + "/v1/models", {}, "POST")
    check(st == 405 and hd.get("Allow") == "GET", "a 405 says what is allowed (Allow: GET)")
    st, _, body = http(srv.url + "/v1/models/" + os.path.basename(MODEL))
    check(st == 200 and json.loads(body)["id"] == os.path.basename(MODEL), "/v1/models/{id} answers for the model")
    bad("/v1/models/nope", None, 404, "model", method="GET")
    bad("/v1/completions", b"{\"prompt\": \"" + b"x" * (9 << 20) + b"\"}", 413)
    st, _, _ = http(srv.url + "/health")
    check(st == 200, "the server is still healthy after the bad requests")

    # spill-bench serve drives it: every request answered, tokens counted, latencies measured (the time
    # between tokens may be 0 when a busy machine delivers several events in one read)
    if BENCH:
        out = subprocess.run([BENCH, "serve", "--url", srv.url, "--concurrency", "1,3", "--max-tokens", "8",
                              "--min-requests", "3", "--json"], capture_output=True, text=True, timeout=300)
        try:
            lv = json.loads(out.stdout)["servers"][0]["levels"]
        except Exception:
            lv = []
        check(len(lv) == 2 and all(x["ok"] >= 3 and x["failed"] == 0 and x["tokens"] > 0 and x["tok_s"] > 0
                                   and x["ttft_p50_s"] > 0 and x["itl_p99_s"] >= x["itl_p50_s"] >= 0 for x in lv),
              "spill-bench serve measures it at concurrency 1 and 3" + (f" ({lv})" if lv else f" ({out.stderr[-300:]})"))

    # SIGTERM with a request in flight: it finishes, then the server exits 0
    result = {}

    def long_one():
        result["r"] = http(srv.url + "/v1/completions", {"prompt": PROMPTS[3], "max_tokens": 60, "temperature": 0})

    t = threading.Thread(target=long_one)
    t.start()
    deadline = time.time() + 20
    while time.time() < deadline and not metric(srv, "spill_requests_running"):
        time.sleep(0.02)
    rc = srv.stop()
    t.join(timeout=60)
    st, _, text = result.get("r", (0, None, ""))
    check(st == 200 and json.loads(text)["choices"][0]["finish_reason"] in ("length", "stop"),
          "SIGTERM: the request in flight finished")
    check(rc == 0, f"SIGTERM: the server exited 0 (got {rc})")
finally:
    if srv.p.poll() is None:
        srv.p.kill()

# --itl-target: with a target of 1 ms (more than a step of stories260K takes here alone, less than 8
# at once may), eight requests at once each get the reference text, and /metrics shows the step's cap
srv = Server("--parallel", "4", "--ctx-size", "256", "--kv-block", "16", "--itl-target", "1")
try:
    paced = {}

    def paced_one(p):
        st, _, text = http(srv.url + "/v1/completions", {"prompt": p, "max_tokens": 24, "temperature": 0})
        paced[p] = json.loads(text)["choices"][0]["text"] if st == 200 else f"HTTP {st}: {text[:120]}"

    threads = [threading.Thread(target=paced_one, args=(p,)) for p in PROMPTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(all(paced.get(p) == ref[p] for p in PROMPTS), "--itl-target 1: eight requests at once, each the reference text"
          + "".join(f"; {p!r}: {paced.get(p)!r} vs {ref[p]!r}" for p in PROMPTS if paced.get(p) != ref[p]))
    cap = metric(srv, "spill_step_token_cap")
    check(cap is not None and 1 <= cap <= 64, f"--itl-target: /metrics has spill_step_token_cap within 1..64 (got {cap})")
finally:
    srv.stop()

# wrong flags: exit 2 with the flag or name in the message, before any model is read or port taken
for args, want in ((["--profile", "no-such-profile"], "no-such-profile"), (["--profile-file", "/nonexistent/p.json"], "/nonexistent/p.json"),
                   (["--parallel", "0"], "--parallel"), (["--itl-target", "-5"], "--itl-target")):
    r = subprocess.run([BIN, "-m", MODEL, "--port", "0", *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                       text=True, timeout=60)
    check(r.returncode == 2 and want in r.stderr, f"{' '.join(args)}: exit 2 naming {want} (got {r.returncode}: {r.stderr.strip()[:200]})")

# a full queue: one slot, one waiting place; the rest get 429 with Retry-After
srv = Server("--parallel", "1", "--max-waiting", "1", "--ctx-size", "256")
try:
    codes, retry = [], []

    def one(i):
        st, hd, _ = http(srv.url + "/v1/completions", {"prompt": PROMPTS[i], "max_tokens": 60, "temperature": 0})
        codes.append(st)
        if st == 429:
            retry.append(hd.get("Retry-After"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(codes.count(200) >= 2 and codes.count(429) >= 1 and all(r for r in retry),
          f"a full queue: 429 with Retry-After (codes {sorted(codes)})")
    # n beyond one slot and one waiting place is never possible: a 400, not "retry later"; 2 fit
    st, _, text = http(srv.url + "/v1/completions", {"prompt": "hi", "max_tokens": 2, "n": 3})
    check(st == 400 and json.loads(text)["error"]["param"] == "n", f"n=3 on one slot and one place: 400 naming n ({st})")
    st, _, text = http(srv.url + "/v1/completions", {"prompt": "hi", "max_tokens": 2, "n": 2})
    check(st == 200 and len(json.loads(text)["choices"]) == 2, f"n=2 there: two choices ({st})")
    # best_of is what runs when it exceeds n: the 400 names it, not n
    st, _, text = http(srv.url + "/v1/completions", {"prompt": "hi", "max_tokens": 2, "n": 1, "best_of": 3})
    err = json.loads(text).get("error", {}) if text else {}
    check(st == 400 and err.get("param") == "best_of" and err.get("message", "").startswith("best_of is 3"),
          f"best_of=3 on one slot and one place: 400 naming best_of ({st}: {text[:120]})")
finally:
    srv.stop()

print(f"{len(failures)} failed" if failures else "all passed")
sys.exit(1 if failures else 0)
