#!/usr/bin/env python3
"""Write a tokenizer.json shaped like Llama-3's (byte-level BPE, 128,000 vocabulary entries, 256
added tokens, ~280,000 merges, normalizer / pre_tokenizer / post_processor / decoder objects), about
10 MB, for benchmarks/json_bench.c. The same arguments always give the same bytes (seeded RNG, no
dict-order or clock dependence), so the file is made by the benchmark rather than committed.

The strings are those of a byte-level BPE: every byte mapped through GPT-2's bytes_to_unicode (space
is "Ġ" U+0120, newline "Ċ" U+010A), English-like words, digits, code punctuation (quotes and
backslashes, which need escapes), and CJK / Cyrillic / Greek / Hangul / Devanagari / emoji text seen
as its UTF-8 bytes (so "ä¸Ń"-style tokens). Roughly a third of the vocabulary and merges are written
with \\uXXXX escapes (as Python's json.dump writes them) and the rest as raw UTF-8 (as the
tokenizers library writes them), so that a reader's escape path and its UTF-8 path are both timed.

It is a JSON benchmark input, not a working tokenizer: merges split vocabulary entries but are not
checked to reproduce them.

usage: gen_big_tokenizer_json.py OUT [--vocab N] [--merges N] [--merges-format strings|pairs] [--seed S]
"""
import argparse
import json
import random
import sys


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


B2U = bytes_to_unicode()
SYLL = ["th", "he", "in", "er", "an", "re", "on", "at", "en", "nd", "ti", "es", "or", "te", "of", "ed", "is", "it",
        "al", "ar", "st", "to", "nt", "ng", "se", "ha", "as", "ou", "io", "le", "ve", "co", "me", "de", "hi", "ri",
        "ro", "ic", "ne", "ea", "ra", "ce", "li", "ch", "ll", "be", "ma", "si", "om", "ur", "a", "e", "i", "o", "u",
        "y", "s", "t", "ing", "tion", "ment", "ness", "able", "ize", "ally", "ous"]
PUNCT = list("\"\\{}()[];:,.<>/=+-*&|!?#$%@^~`'_") + ["\n", "\t", " ", "  ", "\r\n", "    "]
SCRIPTS = [(0x4E00, 0x9FFF), (0x0430, 0x044F), (0x03B1, 0x03C9), (0xAC00, 0xD7A3), (0x0905, 0x0939),
           (0x0627, 0x064A), (0x3041, 0x3096), (0x1F600, 0x1F64F), (0x00E0, 0x00FF)]


def bl(text):
    """text as a byte-level BPE token string"""
    return "".join(B2U[b] for b in text.encode("utf-8"))


def word(r):
    w = "".join(r.choice(SYLL) for _ in range(r.choice((1, 2, 2, 3, 3, 4))))
    x = r.random()
    if x < 0.15:
        w = w.capitalize()
    elif x < 0.18:
        w = w.upper()
    return w


def token(r):
    x = r.random()
    if x < 0.55:
        return bl((" " if r.random() < 0.6 else "") + word(r))
    if x < 0.75:
        lo, hi = r.choice(SCRIPTS)
        s = "".join(chr(r.randint(lo, hi)) for _ in range(r.choice((1, 1, 2, 3))))
        return bl((" " if r.random() < 0.3 else "") + s)
    if x < 0.78:
        return bl((" " if r.random() < 0.3 else "") + str(r.randint(0, 999)))
    if x < 0.90:
        return bl("".join(r.choice(PUNCT) for _ in range(r.choice((1, 2, 2, 3, 4)))))
    return bl(word(r)[1:] or "x")


def jstr(s, r, esc_p):
    """a JSON string literal; with probability esc_p every non-ASCII character as \\uXXXX"""
    return json.dumps(s, ensure_ascii=r.random() < esc_p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--vocab", type=int, default=128000)
    ap.add_argument("--merges", type=int, default=280147)
    ap.add_argument("--merges-format", choices=("strings", "pairs"), default="strings",
                    help='"a b" strings (Llama-3, tokenizers < 0.20) or ["a", "b"] pairs (tokenizers >= 0.20)')
    ap.add_argument("--escaped", type=float, default=0.33, help="share of strings written with \\u escapes")
    ap.add_argument("--seed", type=int, default=17)
    a = ap.parse_args()
    r = random.Random(a.seed)

    vocab = [B2U[b] for b in range(256)]
    seen = set(vocab)
    while len(vocab) < a.vocab:
        t = token(r)
        if t not in seen:
            seen.add(t)
            vocab.append(t)
    merges, mseen = [], set()
    i = 0
    while len(merges) < a.merges:
        t = vocab[256 + i % (len(vocab) - 256)]
        i += 1
        if len(t) < 2:
            continue
        k = r.randint(1, len(t) - 1)
        m = (t[:k], t[k:])
        if " " in t or m in mseen:
            continue
        mseen.add(m)
        merges.append(m)

    specials = ["<|begin_of_text|>", "<|end_of_text|>"] + ["<|reserved_special_token_%d|>" % k for k in range(254)]
    n0 = len(vocab)
    pre = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
                                                " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    norm = {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Replace", "pattern": {"String": "\u00a0"},
                                                                  "content": " "}]}
    bot = "<|begin_of_text|>"

    def sp(t):
        return {"SpecialToken": {"id": bot, "type_id": t}}

    def sq(x, t):
        return {"Sequence": {"id": x, "type_id": t}}

    post = {"type": "TemplateProcessing", "single": [sp(0), sq("A", 0)], "pair": [sp(0), sq("A", 0), sp(1), sq("B", 1)],
            "special_tokens": {bot: {"id": bot, "ids": [n0], "tokens": [bot]}}}
    dec = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}

    def obj(v, ind):
        return json.dumps(v, indent=2, ensure_ascii=False).replace("\n", "\n" + ind)

    o = ['{\n  "version": "1.0",\n  "truncation": null,\n  "padding": null,\n  "added_tokens": [']
    for k, s in enumerate(specials):
        o.append('%s\n    {\n      "id": %d,\n      "content": %s,\n      "single_word": false,\n'
                 '      "lstrip": false,\n      "rstrip": false,\n      "normalized": false,\n      "special": true\n'
                 '    }' % ("," if k else "", n0 + k, json.dumps(s)))
    o.append("\n  ],\n")
    o.append('  "normalizer": %s,\n  "pre_tokenizer": %s,\n  "post_processor": %s,\n  "decoder": %s,\n'
             % (obj(norm, "  "), obj(pre, "  "), obj(post, "  "), obj(dec, "  ")))
    o.append('  "model": {\n    "type": "BPE",\n    "dropout": null,\n    "unk_token": null,\n'
             '    "continuing_subword_prefix": null,\n    "end_of_word_suffix": null,\n    "fuse_unk": false,\n'
             '    "byte_fallback": false,\n    "ignore_merges": true,\n    "vocab": {')
    o.append(",".join("\n      %s: %d" % (jstr(t, r, a.escaped), k) for k, t in enumerate(vocab)))
    o.append('\n    },\n    "merges": [')
    if a.merges_format == "strings":
        o.append(",".join("\n      " + jstr(x + " " + y, r, a.escaped) for x, y in merges))
    else:
        o.append(",".join("\n      [\n        %s,\n        %s\n      ]" % (jstr(x, r, a.escaped), jstr(y, r, a.escaped))
                          for x, y in merges))
    o.append("\n    ]\n  }\n}\n")
    data = "".join(o).encode("utf-8")
    with open(a.out, "wb") as f:
        f.write(data)
    json.loads(data)  # it is JSON
    print("%s: %d bytes, %d vocab entries, %d added tokens, %d merges (%s)" %
          (a.out, len(data), len(vocab), len(specials), len(merges), a.merges_format), file=sys.stderr)


if __name__ == "__main__":
    main()
