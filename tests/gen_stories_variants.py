#!/usr/bin/env python3
"""Turns ../shared/models/stories260k-f32.gguf into the variants tests/test_variants.c loads:

  $OUT/stories-{f16,bf16,q8_0,q4_0,q4_1}.gguf   the same model with its matrices in another type
  $OUT/stories-hf-{f32,f16,bf16}/               a Hugging Face directory: config.json, safetensors with
                                               q/k rows permuted back to rotate-half, and a byte-level
                                               BPE tokenizer.json of 512 tokens (ids only matter here)

Uses only numpy and gguf from PyPI (pip install numpy gguf). The variants are generated, not
committed (the repository never copies the model): tests/CMakeLists.txt runs this before the test
when Python and gguf are there, and the test skips with the reason when they are not.
K-quants (Q4_K, Q6_K) need rows that are multiples of 256 values; stories260K's are 64 wide, so they
are tested on synthetic models instead (tests/test_kquant.c).

  python3 tests/gen_stories_variants.py MODEL.gguf OUT_DIR
"""
import json
import os
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader, GGUFValueType, GGUFWriter, quants


def field_value(f):
    if f.types[0] == GGUFValueType.ARRAY:
        if f.types[1] == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8", "surrogateescape") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    if f.types[0] == GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8", "surrogateescape")
    return f.parts[f.data[0]].tolist()[0]


def read(path):
    r = GGUFReader(path)
    kv = {}
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.alignment":
            continue
        kv[name] = (f.types, field_value(f))
    tensors = {t.name: np.array(t.data, dtype=np.float32).reshape([int(x) for x in reversed(t.shape)]) for t in r.tensors}
    return kv, tensors


def write_gguf(kv, tensors, qtype, path):
    w = GGUFWriter(path, kv["general.architecture"][1])
    for k, (types, v) in kv.items():
        if k == "general.architecture":
            continue
        if types[0] == GGUFValueType.ARRAY:
            w.add_array(k, v)  # the element type is taken from the values
        else:
            w.add_key_value(k, v, types[0])
    for name, a in tensors.items():
        if a.ndim == 2 and qtype not in (Q.F16, Q.BF16) and a.shape[-1] % 32:
            w.add_tensor(name, a)  # rows that are not whole 32-value blocks stay F32, as llama.cpp does
        elif a.ndim == 2:
            if qtype == Q.F16:
                w.add_tensor(name, a.astype(np.float16))
            else:
                q = quants.quantize(a, qtype)
                w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
        else:
            w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def unpermute(w, n_head):
    # llama.cpp's converter interleaves each head's halves for adjacent-pair RoPE; undo it
    rows, cols = w.shape
    return w.reshape(n_head, rows // n_head // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def to_bf16_bytes(a):
    u = a.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16).tobytes()


def write_safetensors(tensors, dtype, path):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype=np.float32)
        if dtype == "F32":
            b = a.tobytes()
        elif dtype == "F16":
            b = a.astype(np.float16).tobytes()
        else:
            b = to_bf16_bytes(a)
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def hf_dir(kv, tensors, dtype, out):
    os.makedirs(out, exist_ok=True)
    a = "llama."
    n_head = kv[a + "attention.head_count"][1]
    n_kv = kv.get(a + "attention.head_count_kv", (None, n_head))[1]
    L = kv[a + "block_count"][1]
    dim = kv[a + "embedding_length"][1]
    vocab = tensors["token_embd.weight"].shape[0]
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": dim, "intermediate_size": kv[a + "feed_forward_length"][1],
           "num_hidden_layers": L, "num_attention_heads": n_head, "num_key_value_heads": n_kv, "vocab_size": vocab,
           "max_position_embeddings": kv.get(a + "context_length", (None, 2048))[1],
           "rms_norm_eps": kv.get(a + "attention.layer_norm_rms_epsilon", (None, 1e-5))[1],
           "rope_theta": kv.get(a + "rope.freq_base", (None, 10000.0))[1], "tie_word_embeddings": "output.weight" not in tensors,
           "torch_dtype": {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype]}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    names = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    per = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
           "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
           "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    st = {}
    for name, t in tensors.items():
        if name in names:
            st[names[name]] = t
            continue
        _, l, kind, _ = name.split(".")
        if kind == "attn_q":
            t = unpermute(t, n_head)
        elif kind == "attn_k":
            t = unpermute(t, n_kv)
        st[f"model.layers.{l}.{per[kind]}.weight"] = t
    write_safetensors(st, dtype, os.path.join(out, "model.safetensors"))
    # a byte-level BPE vocabulary of the same size: the tests feed token ids, so only its shape matters
    byte_chars = [chr(c) for c in range(33, 127)] + [chr(c) for c in range(161, 173)] + [chr(c) for c in range(174, 256)]
    extra = [chr(256 + i) for i in range(256 - len(byte_chars))]
    vocab_map = {c: i for i, c in enumerate(byte_chars + extra)}
    for i in range(256, vocab):
        vocab_map["t%d" % i] = i
    tok = {"version": "1.0", "added_tokens": [], "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
           "post_processor": None, "decoder": {"type": "ByteLevel"},
           "model": {"type": "BPE", "vocab": vocab_map, "merges": []}}
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(tok, f)


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    kv, tensors = read(src)
    for name, q in (("f16", Q.F16), ("bf16", Q.BF16), ("q8_0", Q.Q8_0), ("q4_0", Q.Q4_0), ("q4_1", Q.Q4_1)):
        write_gguf(kv, tensors, q, os.path.join(out, f"stories-{name}.gguf"))
    for d in ("F32", "F16", "BF16"):
        hf_dir(kv, tensors, d, os.path.join(out, f"stories-hf-{d.lower()}"))
    print("wrote", out)


if __name__ == "__main__":
    main()
