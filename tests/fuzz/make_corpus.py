#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (corpus/<target>/) from the repository's fixtures and a few
hand-made inputs. Run once from anywhere; the output is committed. Needs numpy and gguf (PyPI) for
the tiny model GGUF."""
import json
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
FIX = os.path.join(TESTS, "fixtures")
OUT = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(*p):
    with open(os.path.join(FIX, *p), "rb") as f:
        return f.read()


def tiny_model(path, arch="llama", tied=True):
    """A Llama GGUF small enough to mutate: 1 layer, dim 8, 2 heads (1 KV head), ffn 16, vocab 12."""
    import numpy as np
    import gguf
    w = gguf.GGUFWriter(path, arch)
    dim, heads, kv, ffn, vocab = 8, 2, 1, 16, 12
    w.add_block_count(1)
    w.add_context_length(32)
    w.add_embedding_length(dim)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("llama")
    toks = ["<unk>", "<s>", "</s>", "\u2581", "\u2581a", "a", "b", "c", "\u2581b", "<0x0A>", "\u2581ab", "ab"]
    w.add_token_list(toks)
    w.add_token_scores([0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0, -9.0])
    w.add_token_types([2, 3, 3, 1, 1, 1, 1, 1, 1, 6, 1, 1])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}")
    r = np.random.default_rng(1)
    f = lambda *s: r.standard_normal(s).astype(np.float32)
    w.add_tensor("token_embd.weight", f(vocab, dim))
    w.add_tensor("output_norm.weight", f(dim))
    if not tied:
        w.add_tensor("output.weight", f(vocab, dim))
    hd = dim // heads
    w.add_tensor("blk.0.attn_norm.weight", f(dim))
    w.add_tensor("blk.0.attn_q.weight", f(dim, dim))
    w.add_tensor("blk.0.attn_k.weight", f(kv * hd, dim))
    w.add_tensor("blk.0.attn_v.weight", f(kv * hd, dim))
    w.add_tensor("blk.0.attn_output.weight", f(dim, dim))
    w.add_tensor("blk.0.ffn_norm.weight", f(dim))
    w.add_tensor("blk.0.ffn_gate.weight", f(ffn, dim))
    w.add_tensor("blk.0.ffn_up.weight", f(ffn, dim))
    w.add_tensor("blk.0.ffn_down.weight", f(dim, ffn))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def safetensors(tensors, meta=None):
    hdr, data = {}, b""
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dtype, shape, blob in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    h = json.dumps(hdr).encode()
    return struct.pack("<Q", len(h)) + h + data


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    # json
    put("json", "config.json", read("hf-llama3", "config.json"))
    put("json", "tokenizer_config.json", read("hf-qwen2", "tokenizer_config.json"))
    put("json", "generation_config.json", read("hf-llama3", "generation_config.json"))
    put("json", "values.json", '[0, -1, 1.5e300, -2.5E-3, 9223372036854775807, 9223372036854775808, true, false, null, '
        '"a\\u00e9\\ud83d\\ude00\\n\\"\\\\\\/", {}, [], {"k": {"k": [1, {"x": ""}]}}]')
    put("json", "nested.json", "[" * 40 + "]" * 40)
    put("json", "utf8.json", '{"\u65e5\u672c": "\u00e9\U0001F600", "a": 1}')
    # gguf: tokenizers' files and the tiny model
    for n in ("spm", "llama3", "gpt2", "qwen2", "unknown-type"):
        put("gguf", n + ".gguf", read("tokenizers", "gguf", n + ".gguf"))
    tiny = os.path.join(OUT, "tiny.gguf.tmp")
    os.makedirs(OUT, exist_ok=True)
    tiny_model(tiny)
    with open(tiny, "rb") as f:
        put("gguf", "tiny-model.gguf", f.read())
    with open(tiny, "rb") as f:
        put("model", "tiny-tied.gguf", f.read())
    tiny_model(tiny, tied=False)
    with open(tiny, "rb") as f:
        put("model", "tiny-untied.gguf", f.read())
    tiny_model(tiny, arch="qwen2")
    with open(tiny, "rb") as f:
        put("model", "tiny-qwen2.gguf", f.read())
    os.remove(tiny)
    # safetensors
    import numpy as np
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    put("safetensors", "f32.safetensors", safetensors([("a", "F32", [2, 3], a.tobytes())], {"format": "pt"}))
    put("safetensors", "mixed.safetensors", safetensors([
        ("w.bf16", "BF16", [4], a.astype(np.float32).tobytes()[:8]),
        ("w.f16", "F16", [2, 2], np.ones((2, 2), np.float16).tobytes()),
        ("scalar", "F32", [], np.float32(1).tobytes()),
        ("empty", "F32", [0, 3], b"")]))
    put("safetensors", "none.safetensors", safetensors([]))
    # config.json
    put("hf_config", "llama3.json", read("hf-llama3", "config.json"))
    put("hf_config", "qwen2.json", read("hf-qwen2", "config.json"))
    put("hf_config", "mistral.json", json.dumps({
        "architectures": ["MistralForCausalLM"], "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
        "num_hidden_layers": 2, "num_key_value_heads": 2, "vocab_size": 100, "rms_norm_eps": 1e-5, "rope_theta": 1e6,
        "max_position_embeddings": 4096, "torch_dtype": "float16", "head_dim": 16, "tie_word_embeddings": True}))
    # tokenizer.json, NUL, text
    text = "Hello world! <|begin_of_text|> 12345 caf\u00e9 \u65e5\u672c\u8a9e \U0001F600\n\n  tabs\tand  spaces".encode()
    for name, path in (("llama3", ("hf-llama3", "tokenizer.json")), ("qwen2", ("hf-qwen2", "tokenizer.json")),
                       ("misc-a", ("tokenizers", "hf", "misc-a", "tokenizer.json"))):
        put("tokenizer_json", name, read(*path) + b"\0" + text)
    small = {"version": "1.0", "truncation": None, "padding": None,
             "added_tokens": [{"id": 5, "content": "<eos>", "single_word": False, "lstrip": False, "rstrip": False,
                               "normalized": False, "special": True}],
             "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                                   "use_regex": True},
             "post_processor": None, "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                                                 "use_regex": True},
             "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                       "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                       "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "\u0120ab": 4, "<eos>": 5},
                       "merges": ["a b", "\u0120 ab"]}}
    put("tokenizer_json", "small", json.dumps(small).encode() + b"\0ab ab<eos>ba")
    # chat templates: template, NUL, messages role\x01content separated by NUL
    msgs = b"system\x01Be brief.\0user\x01Hi there\0assistant\x01Hello!\0user\x01Bye"
    for name, path in (("qwen2", ("hf-qwen2", "tokenizer_config.json")), ("llama3", ("hf-llama3", "tokenizer_config.json")),
                       ("smollm2", ("tokenizers", "smollm2", "tokenizer_config.json"))):
        t = json.loads(read(*path)).get("chat_template")
        if isinstance(t, str):
            put("chat", name, t.encode() + b"\0" + msgs)
    put("chat", "none", b"\0user\x01plain")
    # hardware profiles
    prof = {"name": "test", "source": "make_corpus.py", "has_gpu": True, "unified": False,
            "hbm": {"capacity": 96e9, "gpu_read": 4e12, "cpu_read": 1e11},
            "host": {"capacity": 480e9, "gpu_read": 3.75e11, "cpu_read": 5e11},
            "link": {"h2d": 3.75e11, "d2h": 2.97e11, "fault": 5e10}, "flops": {"gpu": 9e14, "cpu": 3e12},
            "grain": 2097152, "disk": {"read": 5e9}}
    put("profile", "gh200.json", json.dumps(prof, indent=1))
    cpu = dict(prof, name="cpu", has_gpu=False, hbm={"capacity": 0, "gpu_read": 0, "cpu_read": 0},
               cpu_rates={"Q4_1": {"one": 8.6e9, "batch": 1.6e10}, "BF16": {"one": 6.3e9, "batch": 1.6e10}})
    del cpu["disk"]
    put("profile", "cpu.json", json.dumps(cpu))
    # SPILL_* options: NAME=VALUE lines
    put("options", "sizes", "hbm-budget=80G\nSPILL_HOST_LIMIT=512M\nhbm-reserve=1.5G\nhost-node=-1\n")
    put("options", "env", "SPILL_POLICY=stream\nthreads=4\nlog=on\nstats=no\nbackend=host\ndevice=cpu\n")
    put("options", "strings", "SPILL_ALLOC_LOG=/tmp/x.csv\nmemgetinfo=virtual\ntokenizer-pre=llama3\nSPILL_BOGUS=1\n")
    # command lines: NUL-separated words
    put("args", "generate", b"\0".join([b"-m", b"model.gguf", b"-p", b"Once upon", b"-n", b"32", b"--temp", b"0.7",
                                         b"--seed", b"42", b"--host-limit", b"2G", b"--no-chat", b"-v"]))
    put("args", "options", b"\0".join([b"--hbm-budget=80G", b"--policy", b"auto", b"--threads", b"2", b"--log", b"1"]))
    put("args", "help", b"--help")
    put("args", "bad", b"\0".join([b"-n", b"-5", b"--temp", b"nan", b"--", b"-x"]))
    write_cli()
    # server request bodies: first byte 0 = /v1/completions, 1 = /v1/chat/completions
    put("server", "completion", b"\0" + json.dumps({"model": "stories", "prompt": "Once upon a time", "max_tokens": 8,
                                                    "temperature": 0.5, "top_p": 0.9, "seed": 3, "stop": ["\n", "."],
                                                    "stream": True}).encode())
    put("server", "tokens", b"\0" + json.dumps({"prompt": [1, 2, 3], "max_tokens": 2, "top_k": 5}).encode())
    put("server", "chat", b"\1" + json.dumps({"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                                                          {"role": "user", "content": "Hi"}],
                                               "max_tokens": 4, "stop": "x", "stream": False}).encode())
    put("server", "chat-parts", b"\1" + json.dumps({"messages": [{"role": "developer", "content": "Be brief."},
                                                                {"role": "user", "content": [{"type": "text", "text": "Hi"},
                                                                                             {"type": "text", "text": "there"}]}],
                                                     "stream": True, "stream_options": {"include_usage": True},
                                                     "logprobs": False, "logit_bias": {}, "frequency_penalty": 0,
                                                     "tool_choice": "none", "response_format": {"type": "text"}}).encode())


def write_cli():
    """Every program's own command line (fuzz_cli.c): a byte picking the program, then NUL-separated words.
    0 spill-generate, 1 spill-info, 2 spill-plan, 3 spill-server, 4 spill-bench tiers, 5 spill-bench
    placement, 6 spill-bench with the command from the input, 7 spill-bench serve."""
    def cl(name, which, *words):
        put("cli", name, bytes([which]) + b"\0".join(w.encode() for w in words))
    cl("generate", 0, "-m", "model.gguf", "-p", "Once upon", "-n", "32", "--temp", "0.7", "--top-k", "20", "--top-p", "0.9",
       "--seed", "42", "--chat", "-t", "2", "-c", "512", "-b", "16", "--kv-block", "32", "--host-limit", "2G",
       "--policy", "stream", "--device", "cpu", "--disk-io", "mmap", "--no-mmap", "-v")
    cl("generate-draft", 0, "-f", "prompt.txt", "--draft-skip", "3,5,10-14", "--draft-k", "4", "--draft-file", "d.json",
       "--profile", "gh200-96", "--backend", "emulated", "--hbm-budget", "1G", "--tokenizer-pre", "llama3")
    cl("generate-bad", 0, "--n-parallel", "4", "--draft-skip", "2", "--kv-block", "48", "--top-p", "0")
    cl("generate-help", 0, "--help")
    cl("info", 1, "--json", "--options", "--backend", "host")
    cl("plan", 2, "-m", "model.gguf", "--policy", "auto", "--profile", "gb200", "--hbm-budget", "20G", "--host-limit", "8G",
       "--ctx", "8192", "--batch", "4", "--prompt-tokens", "256", "--json")
    cl("plan-config", 2, "--config", "config.json", "--dtype", "bf16", "--profile-file", "p.json", "--policy", "ALL")
    cl("server", 3, "-m", "model.gguf", "--host", "0.0.0.0", "--port", "0", "--name", "m", "-c", "1024", "-P", "4",
       "-b", "32", "--prefill-chunk", "16", "--max-waiting", "8", "--kv-block", "16", "--kv-blocks", "64", "-t", "2",
       "--policy", "pin", "--profile", "auto", "--no-mmap")
    cl("tiers", 4, "--size", "64M", "--reps", "5", "--profile-out", "p.json", "--disk-file", "f", "--json")
    cl("placement", 5, "-m", "model.gguf", "--budgets", "25%,1G", "--policies", "fault,PIN,auto", "--prompt-tokens", "64",
       "--gen-tokens", "8", "--reps", "2", "--csv", "--plot", "f.svg", "--plan-profile", "gh200-96")
    cl("placement-disk", 5, "--synthetic", "tiny:layers=2", "--host-limits", "50%,100%", "--disk-io", "uring",
       "--draft-skip", "1", "--draft-k", "2", "--device", "cuda")
    cl("bench-command", 6, "tiers", "--csv")
    cl("bench-unknown", 6, "nope")
    cl("serve", 7, "--url", "http://127.0.0.1:8080", "--url", "http://127.0.0.1:8081", "--labels", "spill,llama",
       "--concurrency", "1,4,16", "--max-tokens", "32", "--requests-per-client", "3", "--min-requests", "4", "--json")


if __name__ == "__main__":
    sys.exit(main())
