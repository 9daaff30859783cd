#!/usr/bin/env python3
"""Every weight format against llama.cpp in one run (issue 16): the default model rewritten as F16,
BF16, Q8_0 and Q4_0 (its own Q4_1 kept), then for each file spill-bench placement (policy host: every
weight in host memory, as llama.cpp's CPU path holds it) and llama.cpp (llama-cpp-python) on the same
file, the same token ids, the same threads, one run of each in turn --reps times. Reported per format: prefill
and decode of both, their ratios, spill's decode as a percentage of the read-bandwidth bound (the
bytes a token reads over the measured host read bandwidth) and the cost model's decode prediction
beside the measurement. Speed is measured here, never asserted by a test.

  pip install llama-cpp-python gguf numpy
  python3 benchmarks/peers/bench_formats.py [-m MODEL.gguf] [--formats q4_1,q8_0,q4_0,f16,bf16]
        [--threads T] [--reps 3] [--prompt-tokens 126] [--gen-tokens 64] [--tiers-size model|SIZE] [--profile-per rep|format] [--profile-once] [--json]

K-quants: the default model's 576-wide rows hold no 256-value block, so make a model that can with
llama.cpp's own quantizer (benchmarks/peers/make_kquant_model.py) and name its format:
  python3 benchmarks/peers/bench_formats.py -m ~/.cache/spill/formats/llama-1b-4L.Q4_K_M.gguf --formats q4_k_m

The rewritten files go to ~/.cache/spill/formats/ (made once, from the model's weights dequantized:
a Q4_1 weight rewritten as F16 holds the Q4_1 values, so every format computes the same model). The
host read bandwidth comes from `spill-bench tiers`, run right before each of spill's runs (or before
each format's runs with --profile-per format, or once first with --profile-once and a fixed
--tiers-size) and written as a profile that the run then uses for its bound and prediction: measured
seconds before, on a machine whose speed drifts. A prediction is compared with the run that followed
its profile, and the error reported is the median of those paired errors (a profile measured once per
format had put Q8_0 25% fast when the machine slowed between it and the runs). The one-token rates
are measured over layers of the model's own widths (tiers --stack-shape). By default tiers measures
over each file's own size: on a machine whose last-level cache holds
the model (a 260 MiB L3 holds every format of the default model but F16/BF16), decode reads much of it
from that cache, and a profile measured over 256 MiB from DRAM predicted Q4_0 26% slow (docs/results.md).
"""
import argparse
import json
import statistics
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import llamacpp  # noqa: E402  (the same llama.cpp loop and token ids as the placement peer)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from gguf_meta import copy_fields, finish  # noqa: E402  (the metadata copy, shared with gguf_first_layers.py)

FORMATS = ["q4_1", "q8_0", "q4_0", "f16", "bf16"]


def rewrite(src, fmt, dst):
    """src's tensors dequantized, every matrix written as fmt (rows that are not whole 32-value blocks
    stay F32, as llama.cpp does); metadata as it was"""
    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from gguf import GGUFReader, GGUFWriter, quants
    qtype = {"q8_0": Q.Q8_0, "q4_0": Q.Q4_0, "q4_1": Q.Q4_1, "f16": Q.F16, "bf16": Q.BF16}[fmt]
    r = GGUFReader(src)
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
    tmp = dst + ".tmp"
    w = GGUFWriter(tmp, arch)
    copy_fields(r, w)
    for t in r.tensors:
        shape = [int(x) for x in reversed(t.shape)]
        a = quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        if a.ndim == 2 and (qtype in (Q.F16, Q.BF16) or a.shape[-1] % 32 == 0):
            if qtype == Q.F16:
                w.add_tensor(t.name, a.astype(np.float16))
            else:
                q = quants.quantize(a, qtype)
                w.add_tensor(t.name, q, raw_shape=q.shape, raw_dtype=qtype)
        else:
            w.add_tensor(t.name, a)
    finish(w, tmp, dst)


def layer_widths(path):
    """the model's hidden width, k/v rows and feed-forward width (spill-bench tiers --stack-shape), or None"""
    from gguf import GGUFReader
    r = GGUFReader(path)
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()

    def num(key):
        f = r.fields.get(f"{arch}.{key}")
        return int(f.parts[-1][0]) if f else None
    d, ff, nh = num("embedding_length"), num("feed_forward_length"), num("attention.head_count")
    nkv = num("attention.head_count_kv") or nh
    hd = num("attention.key_length") or (d // nh if d and nh else None)
    w = (d, nkv * hd if nkv and hd else None, ff)
    return w if all(x and x % 32 == 0 for x in w) else None


def model_for(args, fmt):
    base = os.path.basename(args.model)
    stem = base.split(".")[0]
    own = base.split(".")[-2].lower() if base.count(".") >= 2 else ""
    if fmt == own:
        return args.model
    os.makedirs(args.cache, exist_ok=True)
    path = os.path.join(args.cache, f"{stem}.{fmt.upper()}.gguf")
    if not os.path.exists(path):
        print(f"bench_formats: writing {path}", file=sys.stderr)
        t0 = time.time()
        rewrite(args.model, fmt, path)
        print(f"bench_formats: {os.path.getsize(path) / 2**20:.0f} MiB in {time.time() - t0:.0f} s", file=sys.stderr)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default=os.path.expanduser("~/.cache/spill/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--spill-bench", default=os.path.join(ROOT, "build", "spill-bench"))
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/spill/formats"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prompt-tokens", type=int, default=126)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--profile-once", action="store_true",
                    help="measure the machine (spill-bench tiers) once at the start (with a fixed --tiers-size)")
    ap.add_argument("--profile-per", choices=("rep", "format"), default="rep",
                    help="measure the machine before each of spill's runs (rep, the default: each run's bound and "
                         "prediction from the minute it ran in, the error the median of the paired errors) or "
                         "once before each format's runs (format)")
    ap.add_argument("--tiers-size", default="model",
                    help="spill-bench tiers --size: the read bandwidth's buffer and the one-token rates' stack. "
                         "'model' (the default): each format's own file size, measured before that format's runs "
                         "(--profile-once then only applies to a fixed size), so the bound and the prediction see "
                         "the bytes as the machine serves a model of that size: from DRAM, or partly from a "
                         "last-level cache that holds it (the cost model has no cache tier of its own). A fixed "
                         "size several times the L3 (a machine with a 260 MiB L3 needs 1G or more) gives DRAM's")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    try:
        import llama_cpp
    except ImportError:
        sys.exit("llama-cpp-python is not installed: pip install llama-cpp-python gguf numpy")
    formats = [f.strip().lower() for f in a.formats.split(",") if f.strip()]
    # the model's own format (its file name's, e.g. Q4_K_M from make_kquant_model.py) is measured as it is
    base = os.path.basename(a.model)
    own = base.split(".")[-2].lower() if base.count(".") >= 2 else ""
    bad = [f for f in formats if f not in FORMATS and f != own]
    if bad:
        sys.exit(f"--formats: {', '.join(bad)} not among {', '.join(FORMATS)}")
    paths = {f: model_for(a, f) for f in formats}

    with tempfile.TemporaryDirectory() as td:
        prof = os.path.join(td, "profile.json")

        # the one-token rates over layers of the model's own widths (SmolLM2: 576, 192, 1536)
        widths = layer_widths(a.model)
        shape = ["--stack-shape", ",".join(map(str, widths))] if widths else []

        def measure(size):
            r = subprocess.run([a.spill_bench, "tiers", "--size", size, "--reps", "5", "--profile-out", prof] + shape,
                               capture_output=True, text=True)
            if r.returncode:
                sys.exit("spill-bench tiers failed:\n" + r.stderr)

        by_model = a.tiers_size == "model"
        # when the machine is measured: before each of spill's runs, before each format's, or once first
        # (--profile-once, which needs a fixed size: at each file's own size it is each format's)
        mode = ("format" if by_model else "once") if a.profile_once else a.profile_per
        rows, sizes = [], {}
        for k, f in enumerate(formats):
            # the file's size in whole MiB, never under 16 (the rates' stack of layers needs a few)
            sizes[f] = f"{max(16, -(-os.path.getsize(paths[f]) // 2**20))}M" if by_model else a.tiers_size
            if mode == "format" or (mode == "once" and k == 0):
                measure(sizes[f])
            print(f"bench_formats: {f} ({paths[f]})", file=sys.stderr)
            pa = argparse.Namespace(spill_bench=a.spill_bench, model=paths[f], prompt_tokens=a.prompt_tokens,
                                    gen_tokens=a.gen_tokens, threads=a.threads, reps=a.reps, budgets="100%",
                                    policies="host")
            # spill, then the peer, one run each, --reps times: the two see the same minute of a machine
            # whose speed drifts, and each rep gives a paired ratio; the medians are reported
            one = argparse.Namespace(**{**vars(pa), "reps": 1})
            cmd = [a.spill_bench, "placement", "-m", pa.model, "--prompt-tokens", str(pa.prompt_tokens),
                   "--gen-tokens", str(pa.gen_tokens), "-t", str(pa.threads), "--reps", "1",
                   "--budgets", "100%", "--policies", "host", "--profile-file", prof, "--json"]
            runs, peers, err = [], [], None
            for _ in range(a.reps):
                if mode == "rep":
                    measure(sizes[f])
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode:
                    sys.exit(f"spill-bench placement failed on {f}:\n" + r.stderr)
                runs.append(json.loads(r.stdout)["results"][0])
                if err is None:
                    peer, err = llamacpp.llama_point(one, 0, False)
                    if peer:
                        peers.append(peer)
            med = lambda k: statistics.median(x[k] for x in runs) if all(x.get(k) is not None for x in runs) else None
            s = {k: med(k) for k in ("prefill_tok_s", "decode_tok_s", "bound_decode_tok_s", "percent_of_bound",
                                     "predicted_decode_tok_s")}
            s["error"] = next((x["error"] for x in runs if x.get("error")), None)
            # the prediction's error: each run against the prediction from its own profile, the median of those
            pred_err = (statistics.median(x["predicted_decode_tok_s"] / x["decode_tok_s"] - 1 for x in runs)
                        if all(x.get("predicted_decode_tok_s") and x.get("decode_tok_s") for x in runs) else None)
            row = {"format": f, "file_mib": os.path.getsize(paths[f]) / 2**20, "tiers_size": sizes[f],
                   "spill_prefill": s.get("prefill_tok_s"),
                   "spill_decode": s.get("decode_tok_s"), "bound_decode": s.get("bound_decode_tok_s"),
                   "percent_of_bound": s.get("percent_of_bound"), "predicted_decode": s.get("predicted_decode_tok_s"),
                   "prediction_error": pred_err, "profile_per": mode,
                   "error": s.get("error")}
            if peers and not s["error"]:
                row.update(peer_prefill=statistics.median(p[0] for p in peers),
                           peer_decode=statistics.median(p[1] for p in peers),
                           prefill_ratio=statistics.median(x["prefill_tok_s"] / p[0] for x, p in zip(runs, peers)),
                           decode_ratio=statistics.median(x["decode_tok_s"] / p[1] for x, p in zip(runs, peers)))
            if err:
                row["peer_error"] = " ".join(err)
            rows.append(row)
    if a.json:
        print(json.dumps({"model": a.model, "threads": a.threads, "prompt_tokens": a.prompt_tokens,
                          "gen_tokens": a.gen_tokens, "reps": a.reps, "llama_cpp": llama_cpp.__version__,
                          "rows": rows}, indent=1))
        return
    tiers = "each file's size" if by_model else a.tiers_size
    when = {"once": "once, first", "format": "before each format's runs",
            "rep": "before each of spill's runs; the error is the median of each run's against its own profile's "
                   "prediction"}[mode]
    if widths:
        when += "; the one-token rates over layers " + ",".join(map(str, widths)) + " wide"
    print(f"{a.prompt_tokens}-token prompt, {a.gen_tokens} greedy tokens, {a.threads} threads, median of {a.reps} "
          f"(spill and llama.cpp alternated, one run each; a ratio is the median of the {a.reps} paired ratios); "
          f"llama.cpp = llama-cpp-python {llama_cpp.__version__}; spill policy host; the read bound and the "
          f"prediction from spill-bench tiers --size {tiers}, measured {when}")
    print()
    print("| format | file MiB | spill prefill | llama.cpp prefill | ratio | spill decode | llama.cpp decode | ratio "
          "| % of read bound | predicted decode | prediction error |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r.get("error"):
            print(f"| {r['format']} | {r['file_mib']:.0f} | error: {r['error']} |||||||||")
            continue
        pp, pd = r.get("peer_prefill"), r.get("peer_decode")
        rp = f"{r['prefill_ratio']:.2f}" if pp else "-"
        rd = f"{r['decode_ratio']:.2f}" if pd else "-"
        pe = f"{100 * r['prediction_error']:+.0f}%" if r.get("prediction_error") is not None else "-"
        print(f"| {r['format']} | {r['file_mib']:.0f} | {r['spill_prefill']:.1f} | {pp and f'{pp:.1f}' or '-'} | {rp} "
              f"| {r['spill_decode']:.1f} | {pd and f'{pd:.1f}' or '-'} | {rd} | {r['percent_of_bound']:.0f}% "
              f"| {r['predicted_decode']:.1f} | {pe} |")
        if r.get("peer_error"):
            print(f"  (llama.cpp failed on {r['format']}: {r['peer_error']})")


if __name__ == "__main__":
    main()
