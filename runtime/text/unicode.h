/* UTF-8, and the Unicode data the tokenizer's normalizers need (case mapping, normalization forms).
 * Character classes for splitting (\p{L}, \s, ...) are PCRE2's (regex.h). */
#ifndef SPILL_UNICODE_H
#define SPILL_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* ---- UTF-8 ---- */

/* Decode one code point at s[0..n). Invalid or truncated sequences (overlongs, surrogates and
 * values past U+10FFFF included) decode as one byte, returned as U+FFFD with *len = 1, so that
 * every byte of the input is consumed exactly once. */
uint32_t spill_utf8_decode(const char *s, size_t n, int *len);
/* Length in bytes of the UTF-8 sequence starting with byte c (1 for invalid lead bytes). */
int spill_utf8_len(unsigned char c);
/* Encode cp into out (4 bytes room); returns the length. */
int spill_utf8_encode(uint32_t cp, char *out);
/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 when the bytes there are not one. */
int spill_utf8_valid_at(const char *s, size_t n);
/* 1 when s[0..n) is valid UTF-8. */
int spill_utf8_valid(const char *s, size_t n);

typedef enum spill_utf8_repair {
    SPILL_UTF8_KEEP,        /* leave invalid bytes as they are */
    SPILL_UTF8_PER_BYTE,    /* each byte of an invalid sequence becomes U+FFFD (llama.cpp) */
    SPILL_UTF8_MAXIMAL,     /* each maximal invalid subpart becomes one U+FFFD (Unicode's recommended
                             * practice: Rust's String::from_utf8_lossy, Python's errors="replace") */
} spill_utf8_repair;

/* Write s[0..n) with invalid sequences replaced into out (room for 3*n bytes); returns the length. */
size_t spill_utf8_repair_into(const char *s, size_t n, spill_utf8_repair how, char *out);

/* ---- character properties ---- */

/* The Unicode White_Space property (Rust's char::is_whitespace). */
int spill_cp_is_space(uint32_t cp);
/* Full lowercase mapping of one character (Rust's char::to_lowercase); writes up to 3 code points
 * and returns how many. */
int spill_cp_lower(uint32_t cp, uint32_t out[3]);
/* Canonical combining class. */
int spill_cp_ccc(uint32_t cp);

/* ---- normalization forms ---- */
typedef enum spill_nf { SPILL_NFC, SPILL_NFD, SPILL_NFKC, SPILL_NFKD } spill_nf;

/* Room spill_nf_apply needs for cps[0..n): the length of the full decomposition. */
size_t spill_nf_room(spill_nf form, const uint32_t *cps, size_t n);
/* Normalize cps[0..n) (with a parallel array of tags carried along: a composed character keeps the
 * tag of its first part, a decomposed one gives its tag to every part) into out/out_tag, which need
 * room for spill_nf_room() entries. Returns the output length. */
size_t spill_nf_apply(spill_nf form, const uint32_t *cps, const uint32_t *tags, size_t n, uint32_t *out,
                      uint32_t *out_tag);

/* ---- generated tables (unicode_tables.c) ---- */
typedef struct { uint32_t cp, v; } spill_uni_pair;
typedef struct { uint32_t cp, off, len; } spill_uni_seq;
typedef struct { uint32_t a, b, c; } spill_uni_triple;
extern const spill_uni_pair spill_uni_lower[], spill_uni_ccc[];
extern const int spill_uni_lower_count, spill_uni_ccc_count;
extern const spill_uni_seq spill_uni_lower_multi[], spill_uni_nfd[], spill_uni_nfkd[];
extern const int spill_uni_lower_multi_count, spill_uni_nfd_count, spill_uni_nfkd_count;
extern const uint32_t spill_uni_lower_multi_pool[], spill_uni_nfd_pool[], spill_uni_nfkd_pool[];
extern const spill_uni_triple spill_uni_compose[];
extern const int spill_uni_compose_count;

#endif
