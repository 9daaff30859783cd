/* Tokenizers built from GGUF metadata:
 *  - llama: SentencePiece-style, merges pairs by the highest score, <0xXX> byte fallback, an
 *    optional space prefix, '▁' for spaces;
 *  - gpt2: byte-level BPE with merge ranks, after a pre-tokenization that splits words, numbers,
 *    punctuation and whitespace (the GPT-2 rules; "smollm" also splits every digit apart).
 * Special (control and user-defined) tokens are split out of the text first. */
#ifndef SPILL_TOKENIZER_H
#define SPILL_TOKENIZER_H

#include "gguf.h"

typedef enum spill_tok_kind { SPILL_TOK_SPM, SPILL_TOK_BPE } spill_tok_kind;

enum { /* tokenizer.ggml.token_type values */
    SPILL_TOKTYPE_NORMAL = 1, SPILL_TOKTYPE_UNKNOWN = 2, SPILL_TOKTYPE_CONTROL = 3,
    SPILL_TOKTYPE_USER_DEFINED = 4, SPILL_TOKTYPE_UNUSED = 5, SPILL_TOKTYPE_BYTE = 6,
};

typedef struct spill_strmap spill_strmap;

typedef struct spill_tokenizer {
    spill_tok_kind kind;
    int n_vocab;
    char *text_buf;     /* all token texts, NUL-separated */
    uint32_t *text_off; /* (n_vocab) offset of token i's text in text_buf */
    uint32_t *text_len; /* (n_vocab) */
    float *scores;      /* (n_vocab) SPM only, else NULL */
    int32_t *types;     /* (n_vocab) SPILL_TOKTYPE_* */
    spill_strmap *lookup; /* text -> id */
    /* BPE merges: (left id, right id) -> rank and result id */
    struct spill_merge *merges;
    uint64_t merge_cap;
    int pre_digits;         /* split every digit into its own piece (smollm) */
    int pre_llama3;         /* 0: GPT-2 rules; 3: Llama-3's (numbers in groups of up to 3); 1: Qwen2's (one digit) */
    int byte_tok[256];      /* SPM: id of <0xXX>, or -1 */
    int *special;           /* ids of tokens split out before tokenizing, longest text first */
    int n_special;
    int bos, eos, eot;      /* eot: end of turn (e.g. <|im_end|>), or -1 */
    int eog_extra[8];       /* more ids that end generation (generation_config.json), -1 = none */
    int add_bos, add_space_prefix;
} spill_tokenizer;

int spill_tokenizer_init(spill_tokenizer *t, const spill_gguf *g, spill_err *err);
/* From a Hugging Face directory: tokenizer.json (a byte-level BPE: vocab, merges, added tokens; the
 * GPT-2, Llama-3 or Qwen2 pre-tokenizer), tokenizer_config.json (bos/eos, add_bos_token) and
 * generation_config.json (the ids that end generation). */
int spill_tokenizer_init_hf(spill_tokenizer *t, const char *dir, spill_err *err);
void spill_tokenizer_free(spill_tokenizer *t);

/* Tokenize text[0..len). *out is malloc'd; the caller frees it. parse_special: treat the text of
 * control tokens (e.g. <|im_start|>) as those tokens. */
int spill_tokenize(const spill_tokenizer *t, const char *text, size_t len, int add_bos, int parse_special,
                   int **out, int *n_out, spill_err *err);

/* Bytes a token stands for when printed (control tokens print nothing). Writes at most cap bytes
 * and returns the full length. */
int spill_token_to_bytes(const spill_tokenizer *t, int id, char *buf, int cap);

/* 1 if generation should stop at this token (EOS, end of turn, or another end-of-generation control). */
int spill_token_is_eog(const spill_tokenizer *t, int id);

/* Id of a token with exactly this text, or -1. */
int spill_token_find(const spill_tokenizer *t, const char *text, size_t len);

#endif
