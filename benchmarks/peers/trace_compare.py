#!/usr/bin/env python3
"""Which intermediate tensors of spill and llama.cpp differ, bit for bit, at one position.

  python3 benchmarks/peers/trace_compare.py [--model M.gguf] [--spill-trace BUILD/spill-trace] POS TOKEN...

Runs the tokens through llama.cpp (llama-cpp-python; one token per evaluation, F32 KV cache, flash
attention off) with an eval callback that copies every F32 tensor of position POS, and through
spill-trace, and prints for each of spill's tensors (in the order they are produced) how many values
differ and by how much. docs/correctness.md has what it found on SmolLM2."""
import argparse
import ctypes
import os
import struct
import subprocess

import llama_cpp
import numpy as np
from llama_cpp import llama_cpp as L

WANT = {"attn_norm", "Qcur", "Kcur", "Vcur", "kqv_out", "attn_out", "ffn_inp", "ffn_norm", "ffn_gate", "ffn_up",
        "ffn_swiglu", "ffn_out", "l_out", "result_norm", "result_output"}


def peer(model, pos, tokens):
    g = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))
    g.ggml_get_name.restype = ctypes.c_char_p
    g.ggml_get_name.argtypes = [ctypes.c_void_p]
    g.ggml_op_desc.restype = ctypes.c_char_p
    g.ggml_op_desc.argtypes = [ctypes.c_void_p]
    g.ggml_nbytes.restype = ctypes.c_size_t
    g.ggml_nbytes.argtypes = [ctypes.c_void_p]
    g.ggml_is_contiguous.restype = ctypes.c_bool
    g.ggml_is_contiguous.argtypes = [ctypes.c_void_p]
    g.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    got, active = {}, [False]

    def cb(t, ask, _ud):
        if ask or not active[0]:
            return True
        name, op = g.ggml_get_name(t).decode(), g.ggml_op_desc(t).decode()
        base = name.split("-")[0]
        if base not in WANT or " " in name:
            return True
        # Q and K as they go into attention (after RoPE); V straight from its matmul
        if (base in ("Qcur", "Kcur") and op != "ROPE") or (base == "Vcur" and op != "MUL_MAT"):
            return True
        if ctypes.c_int.from_address(t).value != 0 or not g.ggml_is_contiguous(t):  # F32 only
            return True
        buf = np.empty(g.ggml_nbytes(t) // 4, np.float32)
        g.ggml_backend_tensor_get(t, buf.ctypes.data, 0, buf.nbytes)
        got[name] = buf
        return True

    keep = L.ggml_backend_sched_eval_callback(cb)
    llm = llama_cpp.Llama(model_path=model, n_ctx=max(64, len(tokens) + 1), n_threads=1, n_batch=1, verbose=False,
                          flash_attn=False, type_k=0, type_v=0)
    cp = llm.context_params
    cp.cb_eval = keep
    ctx = L.llama_init_from_model(llm._model.model, cp)
    for p, t in enumerate(tokens[:pos + 1]):
        active[0] = p == pos
        if L.llama_decode(ctx, L.llama_batch_get_one((ctypes.c_int32 * 1)(t), 1)) != 0:
            raise SystemExit("llama_decode failed")
    L.llama_free(ctx)
    return got


def mine(exe, model, pos, tokens):
    raw = subprocess.run([exe, model, str(pos)] + [str(t) for t in tokens], check=True, capture_output=True).stdout
    out, o = [], 0
    while o < len(raw):
        (kl,) = struct.unpack_from("<i", raw, o)
        o += 4
        key = raw[o:o + kl].decode()
        o += kl
        (n,) = struct.unpack_from("<q", raw, o)
        o += 8
        out.append((key, np.frombuffer(raw, np.float32, n, o)))
        o += 4 * n
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/spill/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--spill-trace", default="build/spill-trace")
    ap.add_argument("pos", type=int)
    ap.add_argument("tokens", type=int, nargs="+")
    a = ap.parse_args()
    theirs = peer(a.model, a.pos, a.tokens)
    same = 0
    for key, x in mine(a.spill_trace, a.model, a.pos, a.tokens):
        y = theirs.get(key)
        if y is None or y.size != x.size:
            print(f"{key:16s} not comparable (llama.cpp has {'no such tensor' if y is None else y.size})")
            continue
        nd = int((x.view(np.uint32) != y.view(np.uint32)).sum())
        if nd:
            print(f"{key:16s} {nd:6d} of {x.size:6d} values differ, at most {np.abs(x - y).max():.3g}")
        else:
            same += 1
    print(f"{same} tensors bit-identical")


if __name__ == "__main__":
    main()
