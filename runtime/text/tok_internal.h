/* What the parts of the tokenizer share (the files of runtime/text); callers use tokenizer.h.
 *
 * Encoding runs the stages of the tokenizers library, for tokenizer.json and GGUF alike:
 *   repair UTF-8 -> split out added tokens -> normalize -> split out normalized added tokens
 *   -> pre-tokenize -> model (BPE merges or SentencePiece scores) -> post-process (BOS/EOS)
 * A GGUF file gets the stages its tokenizer.ggml.pre type stands for (tokenizer_gguf.c). */
#ifndef SPILL_TOK_INTERNAL_H
#define SPILL_TOK_INTERNAL_H

#include "regex.h"
#include "tokenizer.h"
#include "unicode.h"

/* ---- growable id vector ---- */
typedef struct spill_ids {
    int *v;
    int n, cap;
    int oom;
} spill_ids;

static inline void spill_ids_push(spill_ids *a, int x) {
    if (a->n == a->cap) {
        int nc = a->cap ? a->cap * 2 : 64;
        int *nv = nc > a->cap ? realloc(a->v, sizeof(int) * (size_t)nc) : NULL;
        if (!nv) {
            a->oom = 1;
            return;
        }
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = x;
}

/* ---- the pieces a text is cut into (pieces.c) ---- */
typedef struct spill_piece {
    size_t off, len; /* bytes in the list's text */
    size_t zero;     /* how many leading bytes stand for the original text's first character: a piece
                      * with zero > 0 starts the input (Metaspace's prepend_scheme "first") */
    int id;          /* >= 0: an added token, passed through untouched */
} spill_piece;

typedef struct spill_pieces {
    char *text;
    size_t len, cap;
    spill_piece *p;
    int n, pcap;
    int oom;
} spill_pieces;

void spill_pieces_clear(spill_pieces *ps);
void spill_pieces_free(spill_pieces *ps);
/* Append bytes to the text; returns their offset. */
size_t spill_pieces_put(spill_pieces *ps, const char *s, size_t n);
/* Append a piece covering text[off..off+len). Empty text pieces are dropped (the library drops them). */
void spill_pieces_add(spill_pieces *ps, size_t off, size_t len, size_t zero, int id);
/* Copy piece i of `from` (text included) to the end of ps. */
void spill_pieces_copy(spill_pieces *ps, const spill_pieces *from, int i);

/* ---- added tokens (added.c) ---- */
typedef struct spill_added_tok {
    int id;
    const char *text; /* the content to match (normalized when `normalized`) */
    size_t len;
    unsigned char special, normalized, lstrip, rstrip, single_word;
} spill_added_tok;

typedef struct spill_added_set {
    spill_added_tok *t; /* sorted by first byte, then longest first */
    int n;
    int first[257];     /* t[first[b]..first[b+1]) start with byte b */
} spill_added_set;

typedef enum spill_added_mode {
    SPILL_ADDED_LEFTMOST_LONGEST, /* tokenizers: scan left to right, longest token at each place */
    SPILL_ADDED_LONGEST_FIRST,    /* llama.cpp: each token in turn, longest first, everywhere */
} spill_added_mode;

/* Sort and index toks (the set keeps the array; texts are not copied). */
int spill_added_build(spill_added_set *set, spill_added_tok *toks, int n);
void spill_added_free(spill_added_set *set);
/* Split every text piece of `in` around the tokens of `set` into `out`. parse_special = 0 leaves
 * special tokens as text. word_re (may be NULL) matches one word character (for single_word). */
int spill_added_split(const spill_added_set *set, spill_added_mode mode, int parse_special,
                      const spill_regex *word_re, const spill_pieces *in, spill_pieces *out, spill_err *err);

/* ---- normalizers (normalize.c): a flattened Sequence ---- */
typedef struct spill_normalizer spill_normalizer;
spill_normalizer *spill_norm_new(void);
void spill_norm_free(spill_normalizer *nz);
int spill_norm_count(const spill_normalizer *nz);
int spill_norm_add_nf(spill_normalizer *nz, spill_nf form);
int spill_norm_add_lowercase(spill_normalizer *nz);
int spill_norm_add_strip(spill_normalizer *nz, int left, int right);
int spill_norm_add_strip_accents(spill_normalizer *nz);
int spill_norm_add_prepend(spill_normalizer *nz, const char *s, size_t n);
/* re is owned by the normalizer from here on (also on failure) */
int spill_norm_add_replace(spill_normalizer *nz, spill_regex *re, const char *content, size_t n);
/* Normalize s[0..n) (valid UTF-8) whose first byte is at original offset orig: writes the result and
 * its zero count (leading bytes that stand for original offset 0) to the end of out as one piece. */
int spill_norm_apply(const spill_normalizer *nz, const char *s, size_t n, size_t orig, spill_pieces *out,
                     spill_err *err);
/* Normalize a whole string (an added token's content). *out is malloc'd. */
int spill_norm_string(const spill_normalizer *nz, const char *s, size_t n, char **out, size_t *out_len,
                      spill_err *err);

/* ---- pre-tokenizers (pretok.c): a flattened Sequence ---- */
typedef enum spill_split_behavior {
    SPILL_SPLIT_REMOVED, SPILL_SPLIT_ISOLATED, SPILL_SPLIT_MERGED_WITH_PREVIOUS, SPILL_SPLIT_MERGED_WITH_NEXT,
    SPILL_SPLIT_CONTIGUOUS,
} spill_split_behavior;
typedef enum spill_prepend { SPILL_PREPEND_NEVER, SPILL_PREPEND_ALWAYS, SPILL_PREPEND_FIRST } spill_prepend;

typedef struct spill_pretok spill_pretok;
spill_pretok *spill_pretok_new(void);
void spill_pretok_free(spill_pretok *pt);
/* re is owned by the pre-tokenizer from here on (also on failure) */
int spill_pretok_add_split(spill_pretok *pt, spill_regex *re, spill_split_behavior behavior, int invert);
int spill_pretok_add_bytelevel(spill_pretok *pt, int add_prefix_space, int use_regex, spill_err *err);
int spill_pretok_add_metaspace(spill_pretok *pt, uint32_t replacement, spill_prepend prepend, int split,
                               spill_err *err);
/* Pre-tokenize s[0..n) (zero: as spill_piece) and hand every resulting pre-token to fn, in order,
 * as soon as it is made (a long text never becomes a long list). sc: scratch from
 * spill_pretok_scratch_new for this pre-tokenizer, reused across calls. pt may be NULL (no
 * pre-tokenizer: the text is one pre-token). fn returns 0, or -1 to stop. */
typedef int (*spill_piece_fn)(void *ctx, const char *s, size_t n, size_t zero);
typedef struct spill_pretok_scratch spill_pretok_scratch;
spill_pretok_scratch *spill_pretok_scratch_new(const spill_pretok *pt);
void spill_pretok_scratch_free(spill_pretok_scratch *sc);
int spill_pretok_run(const spill_pretok *pt, spill_pretok_scratch *sc, const char *s, size_t n, size_t zero,
                     spill_piece_fn fn, void *ctx, spill_err *err);
/* GPT-2's pattern (the ByteLevel pre-tokenizer's) */
extern const char spill_gpt2_pattern[];

/* GPT-2's reversible byte <-> code point map: printable bytes stand for themselves, the rest for 256+. */
uint32_t spill_byte_to_cp(unsigned char b);
int spill_cp_to_byte(uint32_t cp); /* -1 when cp stands for no byte */

/* ---- decoders (decode.c): a flattened Sequence ---- */
typedef struct spill_decoder spill_decoder;
spill_decoder *spill_dec_new(void);
void spill_dec_free(spill_decoder *d);
int spill_dec_add_bytelevel(spill_decoder *d);
int spill_dec_add_metaspace(spill_decoder *d, uint32_t replacement, spill_prepend prepend);
int spill_dec_add_byte_fallback(spill_decoder *d);
int spill_dec_add_fuse(spill_decoder *d);
int spill_dec_add_strip(spill_decoder *d, uint32_t content, int start, int stop);
/* re is owned by the decoder from here on (also on failure) */
int spill_dec_add_replace(spill_decoder *d, spill_regex *re, const char *content, size_t n);

/* ---- the model ---- */
typedef struct spill_merge {
    int32_t left, right; /* -1 = empty slot */
    int32_t rank, result;
} spill_merge;

typedef enum spill_tok_flavor {
    SPILL_FLAVOR_HF,   /* the tokenizers library's rules (tokenizer.json) */
    SPILL_FLAVOR_GGUF, /* llama.cpp's rules (GGUF) */
} spill_tok_flavor;

struct spill_tok_impl {
    spill_tok_flavor flavor;
    spill_utf8_repair repair;
    /* vocabulary: text -> id, open addressing */
    uint64_t map_cap; /* power of two */
    int32_t *map_slot;
    /* BPE */
    spill_merge *merges;
    uint64_t merge_cap;
    int ignore_merges;
    int byte_fallback;  /* tokenizer.json: unknown characters as <0xXX> tokens */
    int fuse_unk;
    /* SPM (GGUF "llama") */
    int byte_tok[256];  /* id of <0xXX>, or -1 */
    int add_space_prefix;
    /* added tokens: matched on the text as given, and (tokenizer.json) on the normalized text */
    spill_added_set added_raw, added_norm;
    spill_added_mode added_mode;
    spill_regex *word_re;
    /* the pipeline */
    spill_normalizer *norm;
    spill_pretok *pre;
    spill_decoder *dec;     /* tokenizer.json; NULL: llama.cpp's token_to_piece (GGUF) */
    int has_decoder;        /* tokenizer.json: decoder present (else tokens are joined by spaces) */
    int clean_spaces;       /* GGUF: llama.cpp tidies spaces before punctuation when detokenizing */
    /* post-processing (add_special = 1): ids before and after the text */
    int prefix[8], n_prefix, suffix[8], n_suffix;
    unsigned char *is_special; /* (n_vocab) tokenizer.json: the token is a special added token */
    unsigned char *added_only; /* (n_vocab) tokenizer.json: an added token the model's vocab lacks */
    char *owned;               /* normalized added-token contents, NUL-separated */
    const char **dec_text;     /* (n_vocab) tokenizer.json: a normalized added token decodes as its
                                * normalized content (the library's id_to_token); NULL: its text */
    uint32_t *dec_len;
};

/* ---- vocabulary and construction (tokenizer.c) ---- */
static inline const char *spill_tok_text(const spill_tokenizer *t, int id) { return t->text_buf + t->text_off[id]; }
/* Set up an empty tokenizer (ids -1, impl allocated). */
int spill_tok_begin(spill_tokenizer *t, spill_tok_flavor flavor, spill_err *err);
/* Token texts (id order) into one buffer, and the text -> id lookup; t->n_vocab must be set. A
 * text with ptr == NULL is an id with no token. Duplicate texts: the first id keeps the text. */
int spill_tok_set_texts(spill_tokenizer *t, const spill_str *texts, const char *path, spill_err *err);
/* Find the eot token by its text among the control tokens, when no id named it. */
void spill_tok_find_eot(spill_tokenizer *t);

/* ---- models (bpe.c, spm.c) ---- */
int spill_bpe_merges_alloc(spill_tokenizer *t, uint64_t n);
/* Merge of rank `rank`: left + right -> result. keep_last: a pair given twice keeps its last rank
 * (the tokenizers library) rather than its first (llama.cpp). */
void spill_bpe_merge_add(spill_tokenizer *t, int left, int right, int result, int rank, int keep_last);
int spill_bpe_merge_find(const spill_tokenizer *t, int left, int right, int *result);
/* Encode one pre-token s[0..n); scratch is reused from one pre-token to the next */
typedef struct spill_bpe_scratch spill_bpe_scratch;
spill_bpe_scratch *spill_bpe_scratch_new(void);
void spill_bpe_scratch_free(spill_bpe_scratch *sc);
void spill_bpe_encode(const spill_tokenizer *t, spill_bpe_scratch *scratch, const char *s, size_t n, spill_ids *out);
/* Encode one text fragment llama.cpp's way: ' ' -> U+2581, a leading one when space_prefix */
void spill_spm_encode(const spill_tokenizer *t, const char *s, size_t n, int space_prefix, spill_ids *out);

#endif
