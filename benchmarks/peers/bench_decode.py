#!/usr/bin/env python3
"""Decode (and prefill) speed of spill-generate next to llama.cpp (llama-cpp-python from PyPI) on the
same GGUF file with the same thread count: median of N runs each, reported as a ratio. Speed is
measured here, never asserted by a test.

  pip install llama-cpp-python numpy
  python3 benchmarks/peers/bench_decode.py [--model M.gguf] [--threads T] [--tokens 64] [--runs 5]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llamacpp import timed_greedy  # noqa: E402  (the same timed loop as the placement peer)


def spill_run(binary, model, prompt, threads, n):
    r = subprocess.run([binary, "-m", model, "-p", prompt, "--temp", "0", "-n", str(n), "-t", str(threads)],
                       capture_output=True, text=True, check=True)
    m = re.search(r"prompt (\d+) tokens, generated (\d+) tokens, prefill ([\d.]+) tok/s, decode ([\d.]+) tok/s", r.stderr)
    if not m:
        sys.exit("could not read spill-generate's closing line:\n" + r.stderr)
    return float(m.group(3)), float(m.group(4)), int(m.group(2))


def llama_run(llm, prompt, n):
    return timed_greedy(llm, llm.tokenize(prompt.encode(), add_bos=False, special=True), n)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/spill/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "spill-generate"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--prompt", default="Once upon a time")
    a = ap.parse_args()

    import llama_cpp
    sp, sd = [], []
    for i in range(a.runs):
        p, d, _ = spill_run(a.binary, a.model, a.prompt, a.threads, a.tokens)
        sp.append(p)
        sd.append(d)
        print(f"spill run {i + 1}/{a.runs}: prefill {p:.1f} tok/s, decode {d:.1f} tok/s", file=sys.stderr)
    llm = llama_cpp.Llama(model_path=a.model, n_ctx=512, n_threads=a.threads, n_threads_batch=a.threads, verbose=False)
    lp, ld = [], []
    for i in range(a.runs):
        p, d = llama_run(llm, a.prompt, a.tokens)
        lp.append(p)
        ld.append(d)
        print(f"llama.cpp run {i + 1}/{a.runs}: prefill {p:.1f} tok/s, decode {d:.1f} tok/s", file=sys.stderr)
    ms, ml = statistics.median(sd), statistics.median(ld)
    print(f"| engine | decode tok/s (median of {a.runs}) | prefill tok/s |")
    print("|---|---|---|")
    print(f"| spill | {ms:.1f} | {statistics.median(sp):.1f} |")
    print(f"| llama.cpp (llama-cpp-python {llama_cpp.__version__}) | {ml:.1f} | {statistics.median(lp):.1f} |")
    print(f"\nspill / llama.cpp decode ratio: {ms / ml:.2f} ({a.threads} threads, {a.tokens} tokens, "
          f"prompt {a.prompt!r}, model {os.path.basename(a.model)})")


if __name__ == "__main__":
    main()
