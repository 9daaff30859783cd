#!/usr/bin/env python3
"""A model for comparing K-quants with llama.cpp (issue 16): random weights in a Llama shape whose
widths are multiples of 256 (the default model's 576-wide rows cannot hold a K-quant block, and
llama.cpp's Q4_K_M of it falls back to Q5_0, which spill does not read), written as F16 with the gguf
package, then quantized by llama.cpp's own quantizer (llama-cpp-python's llama_model_quantize) to
Q4_K_M: Q4_K matrices with Q6_K for some (attn_v, half of ffn_down, output), as the files people
download. Speed only: random weights generate nonsense.

  pip install gguf numpy llama-cpp-python
  python3 benchmarks/peers/make_kquant_model.py [--out ~/.cache/spill/formats/llama-1b-4L.Q4_K_M.gguf]
        [--layers 4] [--dim 2048] [--ffn 8192] [--heads 32] [--kv-heads 8] [--vocab 32000] [--ftype Q4_K_M]
  python3 benchmarks/peers/bench_formats.py -m THAT_FILE --formats q4_k_m

Defaults: Llama-3.2-1B's widths, 4 layers, a 32000-token SentencePiece-style vocabulary."""
import argparse
import os
import sys
import tempfile


def write_f16(path, a):
    import numpy as np
    from gguf import GGUFWriter
    rng = np.random.default_rng(7)
    w = GGUFWriter(path, "llama")
    w.add_name("spill-kquant-bench")
    w.add_block_count(a.layers)
    w.add_embedding_length(a.dim)
    w.add_feed_forward_length(a.ffn)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_context_length(4096)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(1)  # mostly F16
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    toks += [f"\u2581t{i}" for i in range(len(toks), a.vocab)]
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([0.0] * a.vocab)
    w.add_token_types([2] + [3, 3] + [6] * 256 + [1] * (a.vocab - 259))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    hd = a.dim // a.heads

    def mat(rows, cols):
        return (rng.standard_normal((rows, cols), dtype=np.float32) * (1.0 / cols ** 0.5)).astype(np.float16)

    w.add_tensor("token_embd.weight", mat(a.vocab, a.dim))
    for l in range(a.layers):
        p = f"blk.{l}."
        w.add_tensor(p + "attn_norm.weight", np.ones(a.dim, dtype=np.float32))
        w.add_tensor(p + "attn_q.weight", mat(a.dim, a.dim))
        w.add_tensor(p + "attn_k.weight", mat(a.kv_heads * hd, a.dim))
        w.add_tensor(p + "attn_v.weight", mat(a.kv_heads * hd, a.dim))
        w.add_tensor(p + "attn_output.weight", mat(a.dim, a.dim))
        w.add_tensor(p + "ffn_norm.weight", np.ones(a.dim, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", mat(a.ffn, a.dim))
        w.add_tensor(p + "ffn_up.weight", mat(a.ffn, a.dim))
        w.add_tensor(p + "ffn_down.weight", mat(a.dim, a.ffn))
    w.add_tensor("output_norm.weight", np.ones(a.dim, dtype=np.float32))
    w.add_tensor("output.weight", mat(a.vocab, a.dim))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.expanduser("~/.cache/spill/formats/llama-1b-4L.Q4_K_M.gguf"))
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--ffn", type=int, default=8192)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--ftype", default="Q4_K_M", help="a llama.cpp LLAMA_FTYPE_MOSTLY_* name: Q4_K_M, Q4_K_S, Q6_K")
    a = ap.parse_args()
    if a.dim % 256 or a.ffn % 256 or a.dim % a.heads or a.heads % a.kv_heads:
        sys.exit("--dim and --ffn must be multiples of 256 (K-quant blocks), --dim of --heads, --heads of --kv-heads")
    try:
        import llama_cpp
    except ImportError:
        sys.exit("llama-cpp-python is not installed: pip install llama-cpp-python gguf numpy")
    ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + a.ftype.upper(), None)
    if ftype is None:
        sys.exit(f"--ftype {a.ftype}: llama_cpp has no LLAMA_FTYPE_MOSTLY_{a.ftype.upper()}")
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(a.out))) as td:
        f16 = os.path.join(td, "model.F16.gguf")
        print(f"make_kquant_model: writing {f16}", file=sys.stderr)
        write_f16(f16, a)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        params.nthread = os.cpu_count() or 1
        tmp = a.out + ".tmp"
        print(f"make_kquant_model: llama.cpp quantizing to {a.ftype}", file=sys.stderr)
        import ctypes
        rc = llama_cpp.llama_model_quantize(f16.encode(), tmp.encode(), ctypes.byref(params))
        if rc != 0:
            sys.exit(f"llama_model_quantize failed ({rc})")
        os.replace(tmp, a.out)
    print(f"make_kquant_model: wrote {a.out} ({os.path.getsize(a.out) / 2**20:.0f} MiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
