#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python from PyPI) on the same GGUF, the same token ids and the same thread
count as spill-bench placement, reported as ratios to spill measured in the same run.

  pip install llama-cpp-python numpy
  python3 benchmarks/peers/llamacpp.py -m MODEL.gguf [--prompt-tokens 128] [--gen-tokens 64]
        [--threads T] [--reps 5] [--budgets 25%,50%,100%] [--policies host,pin,stream,auto]
        [--gpu] [--json]

On the CPU: llama.cpp's CPU path against each spill policy. With --gpu (needs a CUDA build of
llama-cpp-python): llama.cpp's -ngl split sweep (the share of layers on the GPU matching each budget)
and GGML_CUDA_ENABLE_UNIFIED_MEMORY=1 (every layer on the GPU, oversubscribed through managed memory),
in a fresh process each. Speed is measured, never asserted."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def token_ids(n, vocab):
    # the same ids spill-bench uses (benchmarks/spill_bench.c, tok_of)
    return [3 + (i * 7919) % (vocab - 3) for i in range(n)]


def timed_greedy(llm, toks, gen):
    """llama.cpp evaluates toks, then gen greedy tokens: (prefill tok/s, decode tok/s)"""
    import llama_cpp
    import numpy as np
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(toks)
    t1 = time.perf_counter()
    nv = llm.n_vocab()
    for _ in range(gen):
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(nv,))
        llm.eval([int(np.argmax(logits))])
    t2 = time.perf_counter()
    return len(toks) / (t1 - t0), gen / (t2 - t1)


def llama_once(model, threads, prompt, gen, n_gpu_layers):
    import llama_cpp
    llm = llama_cpp.Llama(model_path=model, n_ctx=prompt + gen + 8, n_threads=threads, n_threads_batch=threads,
                          n_batch=512, n_gpu_layers=n_gpu_layers, verbose=False, logits_all=False)
    pre, dec = timed_greedy(llm, token_ids(prompt, llm.n_vocab()), gen)
    n_layers = int(llm.metadata.get("llama.block_count", "0") or 0)
    llm.close() if hasattr(llm, "close") else None
    return pre, dec, n_layers


def llama_point(args, n_gpu_layers, unified):
    """median of --reps runs, each in a fresh process (the unified-memory switch is read at load)"""
    env = dict(os.environ)
    if unified:
        env["GGML_CUDA_ENABLE_UNIFIED_MEMORY"] = "1"
    code = ("import sys, json; sys.path.insert(0, %r); import llamacpp as p; "
            "print(json.dumps(p.llama_once(%r, %d, %d, %d, %d)))"
            % (os.path.dirname(os.path.abspath(__file__)), args.model, args.threads, args.prompt_tokens,
               args.gen_tokens, n_gpu_layers))
    pre, dec = [], []
    for _ in range(args.reps):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        if r.returncode:
            return None, r.stderr.strip().splitlines()[-1:] or ["failed"]
        p, d, _ = json.loads(r.stdout.strip().splitlines()[-1])
        pre.append(p)
        dec.append(d)
    return (statistics.median(pre), statistics.median(dec)), None


def spill_points(args):
    cmd = [args.spill_bench, "placement", "-m", args.model, "--prompt-tokens", str(args.prompt_tokens),
           "--gen-tokens", str(args.gen_tokens), "-t", str(args.threads), "--reps", str(args.reps),
           "--budgets", args.budgets, "--policies", args.policies, "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit("spill-bench failed:\n" + r.stderr)
    return json.loads(r.stdout)["results"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default=os.path.expanduser("~/.cache/spill/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--spill-bench", default=os.path.join(ROOT, "build", "spill-bench"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--budgets", default="25%,50%,100%")
    ap.add_argument("--policies", default="host,pin,stream,auto")
    ap.add_argument("--gpu", action="store_true", help="also llama.cpp's -ngl sweep and unified memory")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        sys.exit("llama-cpp-python is not installed: pip install llama-cpp-python numpy")

    print(f"spill-bench placement and llama.cpp, same run: {a.model}, {a.prompt_tokens} prompt tokens, "
          f"{a.gen_tokens} generated, {a.threads} threads, median of {a.reps}", file=sys.stderr)
    spill = spill_points(a)
    cpu, err = llama_point(a, 0, False)
    if not cpu:
        sys.exit("llama.cpp failed: " + " ".join(err))
    rows = []
    for s in spill:
        if "error" in s:
            rows.append({"policy": s["policy"], "budget": s["budget_fraction"], "error": s["error"]})
            continue
        rows.append({"policy": s["policy"], "budget": s["budget_fraction"], "spill_prefill": s["prefill_tok_s"],
                     "spill_decode": s["decode_tok_s"], "peer": "llama.cpp cpu", "peer_prefill": cpu[0],
                     "peer_decode": cpu[1], "ratio_prefill": s["prefill_tok_s"] / cpu[0],
                     "ratio_decode": s["decode_tok_s"] / cpu[1]})
    if a.gpu:
        _, _, n_layers = llama_once(a.model, a.threads, 8, 1, 0)
        for b in sorted({s["budget_fraction"] for s in spill}):
            ngl = int(round(b * n_layers))
            g, err = llama_point(a, ngl, False)
            rows.append({"policy": f"llama.cpp -ngl {ngl}", "budget": b, "peer_prefill": g and g[0],
                         "peer_decode": g and g[1], "error": err and " ".join(err)})
        g, err = llama_point(a, 999, True)
        rows.append({"policy": "llama.cpp unified memory", "budget": None, "peer_prefill": g and g[0],
                     "peer_decode": g and g[1], "error": err and " ".join(err)})
    if a.json:
        print(json.dumps({"model": a.model, "threads": a.threads, "prompt_tokens": a.prompt_tokens,
                          "gen_tokens": a.gen_tokens, "reps": a.reps, "rows": rows}, indent=1))
        return
    print("| budget | spill policy | spill prefill | spill decode | llama.cpp prefill | llama.cpp decode | "
          "prefill ratio | decode ratio |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        b = "-" if r["budget"] is None else f"{100 * r['budget']:.0f}%"
        if r.get("error") and "spill_decode" not in r and not r.get("peer_decode"):
            print(f"| {b} | {r['policy']} | error: {r['error']} ||||||")
        elif "spill_decode" in r:
            print(f"| {b} | {r['policy']} | {r['spill_prefill']:.1f} | {r['spill_decode']:.2f} | {r['peer_prefill']:.1f} | "
                  f"{r['peer_decode']:.2f} | {r['ratio_prefill']:.2f} | {r['ratio_decode']:.2f} |")
        else:
            print(f"| {b} | {r['policy']} | | | {r['peer_prefill']:.1f} | {r['peer_decode']:.2f} | | |")


if __name__ == "__main__":
    main()
