#!/usr/bin/env python3
"""spill-server beside llama.cpp's server (llama-cpp-python's, `python -m llama_cpp.server`) on the
same GGUF and the same thread count, under the same client load (`spill-bench serve`, both URLs in one
run, taking turns at each concurrency): aggregate tok/s, time to first token and inter-token latency
(p50/p99) at each concurrency, as a markdown table (stdout) and an SVG plot.

  pip install 'llama-cpp-python[server]'
  python3 benchmarks/peers/bench_serve.py [-m MODEL.gguf] [--threads 2] [--concurrency 1,2,4,8,16,32]
        [--max-tokens 64] [--parallel N] [--plot docs/serve-smollm2-cpu.svg] [--json out.json]

spill-server runs with its own defaults (16 slots) unless --parallel or --spill-args say otherwise; the
peer with llama-cpp-python's (one request at a time).

Both servers listen on loopback only and are stopped at the end. Speed is measured, never asserted."""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_up(url, proc, what, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.5)
    raise SystemExit(f"{what} did not answer at {url} within {timeout} s")


def svg(levels, out):
    """tok/s against concurrency, one line per server"""
    W, H, L, R, T, B = 640, 400, 70, 150, 40, 50
    conc = sorted({lv["concurrency"] for s in levels for lv in s["levels"]})
    ymax = max(lv["tok_s"] for s in levels for lv in s["levels"]) * 1.1 or 1
    xs = {c: L + i * (W - L - R) / max(1, len(conc) - 1) for i, c in enumerate(conc)}
    y = lambda v: H - B - v / ymax * (H - T - B)
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{L}" y="22" font-size="14">aggregate decode tok/s against concurrency (measured)</text>',
             f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
             f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>']
    for k in range(5):
        v = ymax * k / 4
        parts.append(f'<text x="{L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
        parts.append(f'<line x1="{L}" y1="{y(v):.1f}" x2="{W - R}" y2="{y(v):.1f}" stroke="#ddd"/>')
    for c in conc:
        parts.append(f'<text x="{xs[c]:.1f}" y="{H - B + 18}" text-anchor="middle">{c}</text>')
    parts.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">concurrent clients</text>')
    for i, s in enumerate(levels):
        c = colors[i % len(colors)]
        pts = " ".join(f'{xs[lv["concurrency"]]:.1f},{y(lv["tok_s"]):.1f}' for lv in s["levels"])
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{pts}"/>')
        parts.append(f'<text x="{W - R + 12}" y="{T + 20 + 18 * i}" fill="{c}">{s["label"]}</text>')
    parts.append("</svg>")
    with open(out + ".tmp", "w") as f:
        f.write("\n".join(parts) + "\n")
    os.replace(out + ".tmp", out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default=os.path.expanduser("~/.cache/spill/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--concurrency", default="1,2,4,8,16,32")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--ctx", type=int, default=2048, help="context per sequence (spill) / in all (llama.cpp)")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build"))
    ap.add_argument("--parallel", type=int, default=0,
                    help="spill-server's slots (sequences decoded at once); default: the server's own (16), as a "
                         "user who starts it gets; more slots than the CPU can feed in one step lengthen every "
                         "step, and so the time between tokens, for no more throughput")
    ap.add_argument("--spill-args", default="", help="more spill-server options, e.g. \"--prefill-chunk 8\"")
    ap.add_argument("--plot")
    ap.add_argument("--json")
    a = ap.parse_args()
    maxc = max(int(c) for c in a.concurrency.split(","))
    sp, lp = free_port(), free_port()
    slots = ["--parallel", str(a.parallel)] if a.parallel > 0 else []
    spill = subprocess.Popen([os.path.join(a.bin, "spill-server"), "-m", a.model, "--port", str(sp), "-t", str(a.threads),
                              "-c", str(a.ctx), "--max-waiting", str(max(64, 2 * maxc))] + slots + a.spill_args.split(),
                             stderr=subprocess.DEVNULL)
    peer = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", a.model, "--host", "127.0.0.1", "--port",
                             str(lp), "--n_threads", str(a.threads), "--n_threads_batch", str(a.threads), "--n_ctx",
                             str(a.ctx), "--verbose", "False"], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait_up(f"http://127.0.0.1:{sp}", spill, "spill-server")
        wait_up(f"http://127.0.0.1:{lp}", peer, "llama_cpp.server")
        out = subprocess.run([os.path.join(a.bin, "spill-bench"), "serve", "--url", f"http://127.0.0.1:{sp}", "--url",
                              f"http://127.0.0.1:{lp}", "--labels", "spill-server,llama.cpp server", "--concurrency",
                              a.concurrency, "--max-tokens", str(a.max_tokens), "--json"],
                             capture_output=True, text=True, check=True)
    finally:
        for p in (spill, peer):
            p.send_signal(signal.SIGTERM)
        for p in (spill, peer):
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
    res = json.loads(out.stdout)
    servers = res["servers"]
    print(f"model {os.path.basename(a.model)}, {a.threads} threads, {a.max_tokens} tokens per request, "
          f"llama-cpp-python {__import__('llama_cpp').__version__}")
    print("| concurrency | spill tok/s | llama.cpp tok/s | ratio | spill TTFT p50/p99 ms | llama.cpp TTFT p50/p99 ms "
          "| spill ITL p50/p99 ms | llama.cpp ITL p50/p99 ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s_lv, p_lv in zip(servers[0]["levels"], servers[1]["levels"]):
        r = s_lv["tok_s"] / p_lv["tok_s"] if p_lv["tok_s"] else float("nan")
        print(f'| {s_lv["concurrency"]} | {s_lv["tok_s"]:.1f} | {p_lv["tok_s"]:.1f} | {r:.2f}x | '
              f'{s_lv["ttft_p50_s"] * 1e3:.0f}/{s_lv["ttft_p99_s"] * 1e3:.0f} | {p_lv["ttft_p50_s"] * 1e3:.0f}/{p_lv["ttft_p99_s"] * 1e3:.0f} | '
              f'{s_lv["itl_p50_s"] * 1e3:.1f}/{s_lv["itl_p99_s"] * 1e3:.1f} | {p_lv["itl_p50_s"] * 1e3:.1f}/{p_lv["itl_p99_s"] * 1e3:.1f} |')
    first = servers[0]["levels"][0]["tok_s"]
    for lv in servers[0]["levels"]:
        print(f'spill-server at concurrency {lv["concurrency"]}: {lv["tok_s"] / first:.2f}x its concurrency-1 throughput')
    if a.plot:
        svg(servers, a.plot)
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            json.dump(res, f, indent=1)
        os.replace(a.json + ".tmp", a.json)


if __name__ == "__main__":
    main()
