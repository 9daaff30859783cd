/* Tokenizers of GGUF files and of Hugging Face tokenizer.json files (docs/tokenizer.md).
 *
 * Encoding runs the stages of the tokenizers library: invalid UTF-8 repaired, added and special
 * tokens split out, normalizers, pre-tokenizers, the model (BPE with merge ranks, or
 * SentencePiece-style score merges for GGUF "llama" vocabularies), then the post-processor's
 * BOS/EOS. A tokenizer.json gives all of them; a GGUF file gives its vocabulary, merges and a
 * tokenizer.ggml.pre type, which stands for the pre-tokenizer and flags of llama.cpp's table
 * (tokenizer_gguf.c; unknown types are refused). Anything a file asks for that is not understood
 * is an error naming the file and the field, never ignored. */
#ifndef SPILL_TOKENIZER_H
#define SPILL_TOKENIZER_H

#include "gguf.h"

typedef enum spill_tok_kind { SPILL_TOK_SPM, SPILL_TOK_BPE } spill_tok_kind;

enum { /* tokenizer.ggml.token_type values; a tokenizer.json's tokens are NORMAL (model vocabulary),
        * CONTROL (special added tokens) or USER_DEFINED (other added tokens); UNUSED: no token */
    SPILL_TOKTYPE_NORMAL = 1, SPILL_TOKTYPE_UNKNOWN = 2, SPILL_TOKTYPE_CONTROL = 3,
    SPILL_TOKTYPE_USER_DEFINED = 4, SPILL_TOKTYPE_UNUSED = 5, SPILL_TOKTYPE_BYTE = 6,
};

typedef struct spill_tokenizer {
    spill_tok_kind kind;
    int n_vocab;
    char *text_buf;     /* all token texts, NUL-separated */
    uint32_t *text_off; /* (n_vocab) offset of token i's text in text_buf */
    uint32_t *text_len; /* (n_vocab) */
    float *scores;      /* (n_vocab) SPM only, else NULL */
    int32_t *types;     /* (n_vocab) SPILL_TOKTYPE_* */
    int bos, eos, eot;  /* -1 = none; eot: end of turn (e.g. <|im_end|>) */
    int unk;            /* -1 = none */
    int eog_extra[8];   /* more ids that end generation (generation_config.json), -1 = none */
    int add_bos, add_eos; /* spill_tokenize(add_special = 1) starts with bos / ends with eos */
    struct spill_tok_impl *impl; /* lookup, merges, added tokens, pipeline (tok_internal.h) */
} spill_tokenizer;

/* From a GGUF file's tokenizer.ggml.* metadata. */
int spill_tokenizer_init(spill_tokenizer *t, const spill_gguf *g, spill_err *err);
/* The same, but reading the file's tokenizer.ggml.pre as `pre` (one of the known types): for files
 * whose type is missing or unknown, by someone who knows which rules the model was trained with.
 * pre = NULL behaves as spill_tokenizer_init. */
int spill_tokenizer_init_pre(spill_tokenizer *t, const spill_gguf *g, const char *pre, spill_err *err);
/* The tokenizer.ggml.pre types spill knows, comma-separated (for messages and --help). */
const char *spill_tokenizer_pre_types(void);

/* From a Hugging Face directory: tokenizer.json (the whole pipeline; its post-processor decides
 * BOS/EOS, or tokenizer_config.json's add_bos_token/add_eos_token when the post-processor adds
 * nothing), tokenizer_config.json (bos_token, eos_token) and generation_config.json (the ids that
 * end generation). */
int spill_tokenizer_init_hf(spill_tokenizer *t, const char *dir, spill_err *err);
/* From one tokenizer.json file alone (no config files). */
int spill_tokenizer_init_json(spill_tokenizer *t, const char *path, spill_err *err);
void spill_tokenizer_free(spill_tokenizer *t);

/* Tokenize text[0..len). *out is malloc'd; the caller frees it.
 * add_special = 1: the tokenizer's own BOS/EOS (the post-processor, add_bos_token/add_eos_token or
 *   the GGUF type's default), except that no BOS is added when the ids already begin with it (the
 *   text started with the BOS token's text and parse_special matched it); 0: nothing added.
 * parse_special = 1: the texts of special tokens (e.g. <|im_start|>) in the text are those tokens;
 *   0: they are tokenized as text (non-special added tokens always match, as in both libraries). */
int spill_tokenize(const spill_tokenizer *t, const char *text, size_t len, int add_special, int parse_special,
                   int **out, int *n_out, spill_err *err);

/* Bytes a token stands for when printed in the middle of a text, for streaming output (control and
 * special tokens print nothing). Writes at most cap bytes and returns the full length. */
int spill_token_to_bytes(const spill_tokenizer *t, int id, char *buf, int cap);

/* The text of a whole sequence of ids, as the tokenizers library's decode (tokenizer.json) or
 * llama.cpp's detokenize (GGUF) gives it. skip_special: special/control tokens give no text (and
 * for GGUF the BOS/EOS the tokenizer adds are dropped). *out is malloc'd and NUL-terminated. */
int spill_detokenize(const spill_tokenizer *t, const int *ids, int n, int skip_special, char **out, size_t *out_len,
                     spill_err *err);

/* 1 if generation should stop at this token (EOS, end of turn, or another end-of-generation control). */
int spill_token_is_eog(const spill_tokenizer *t, int id);

/* Id of a token with exactly this text, or -1. */
int spill_token_find(const spill_tokenizer *t, const char *text, size_t len);

#endif
