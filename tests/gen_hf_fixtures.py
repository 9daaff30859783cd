#!/usr/bin/env python3
"""Builds the Hugging Face fixtures the C tests read, with transformers and tokenizers from PyPI:

  tests/fixtures/hf-llama3/   a tiny random-weight LlamaForCausalLM with llama3 rope scaling, F32,
                              its tokenizer.json (byte-level BPE, the Llama-3 pre-tokenizer),
                              tokenizer_config.json (a Llama-3 chat template), generation_config.json
  tests/fixtures/hf-qwen2/    a tiny random-weight Qwen2ForCausalLM (q/k/v biases, tied embeddings),
                              its tokenizer.json (the Qwen2 pre-tokenizer), a ChatML template
  */logits.bin                float32 logits of every position for the token ids in ids.txt
  */tokens.tsv                text (hex) -> token ids from the transformers tokenizer

The fixtures are committed, so CI needs neither torch nor transformers. Run:
  pip install torch transformers tokenizers && python3 tests/gen_hf_fixtures.py
"""
import json
import os

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config,
                          Qwen2ForCausalLM)

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
    "The capital of France is Paris. It has 2,161,000 people and 20 arrondissements!",
    "Don't you think it's 12:30 already? We'll see, they'd say; I'm sure you've heard.",
    "def add(a, b):\n    return a + b\n\nprint(add(1234, 56789))",
    "Grüße aus München — 東京 and Москва, ½ of 3.14159… naïve café résumé",
    "   leading spaces, trailing spaces   \n\n\tand tabs\r\nand CRLF lines",
] * 20

TEXTS = [
    "Hello world",
    "Once upon a time, there was a little girl named Lily.",
    "The year 2024 has 366 days; 12345678 is a long number.",
    "Don't you think it's 12:30 already? We'LL see.",
    "def add(a, b):\n    return a + b",
    "Grüße aus München — 東京 naïve café",
    "   spaces   \n\n\tand tabs\r\n",
    "<|begin_of_text|>special <|eot_id|> tokens<|im_start|>",
    "",
]


def tokenizer(regex, specials, path):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok.save(path)
    return tok


def model_fixture(name, model, specials, regex, bos, eos, chat_template):
    out = os.path.join(HERE, name)
    os.makedirs(out, exist_ok=True)
    tokenizer(regex, specials, os.path.join(out, "tokenizer.json"))
    fast = PreTrainedTokenizerFast(tokenizer_file=os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": bos, "eos_token": eos, "add_bos_token": bos is not None,
                   "chat_template": chat_template, "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=1)
    model.save_pretrained(out, safe_serialization=True)
    for junk in ("generation_config.json",):
        pass
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [fast.convert_tokens_to_ids(e) for e in specials[1:]]}, f)
    ids = [int(x) for x in torch.randint(len(specials), model.config.vocab_size, (12,), generator=torch.Generator().manual_seed(3))]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float().contiguous()
    with open(os.path.join(out, "ids.txt"), "w") as f:
        f.write(",".join(map(str, ids)) + "\n")
    logits.numpy().astype("<f4").tofile(os.path.join(out, "logits.bin"))
    with open(os.path.join(out, "tokens.tsv"), "w") as f:
        for t in TEXTS:
            enc = fast(t, add_special_tokens=False)["input_ids"]
            f.write(t.encode().hex() + "\t" + ",".join(map(str, enc)) + "\n")
    print(f"{out}: vocab {model.config.vocab_size}, ids {ids}")


def main():
    torch.manual_seed(0)
    l3_specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
    cfg = LlamaConfig(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=400, max_position_embeddings=512, rope_theta=500000.0,
                      rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=0, eos_token_id=1,
                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 32})
    llama = LlamaForCausalLM(cfg).eval()
    model_fixture("hf-llama3", llama, l3_specials, LLAMA3_RE, "<|begin_of_text|>", "<|eot_id|>",
                  "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
                  "{{ message['content'] | trim }}<|eot_id|>{% endfor %}<|start_header_id|>assistant<|end_header_id|>\n\n")
    torch.manual_seed(1)
    q_specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    qcfg = Qwen2Config(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=400, max_position_embeddings=512, rope_theta=1000000.0,
                       rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False)
    qwen = Qwen2ForCausalLM(qcfg).eval()
    with torch.no_grad():  # Qwen2 initialises its biases to zero; give them values so the test can see them
        for layer in qwen.model.layers:
            for p in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                p.bias.normal_(0, 0.5)
    model_fixture("hf-qwen2", qwen, q_specials, QWEN2_RE, None, "<|im_end|>",
                  "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
                  "{% endfor %}<|im_start|>assistant\n")


if __name__ == "__main__":
    main()
