/* UTF-8 and the few Unicode classes the pre-tokenizers need. */
#ifndef SPILL_UNICODE_H
#define SPILL_UNICODE_H

#include <stddef.h>
#include <stdint.h>

typedef struct { uint32_t lo, hi; } spill_cp_range;
extern const spill_cp_range spill_unicode_letters[], spill_unicode_numbers[], spill_unicode_marks[];
extern const int spill_unicode_letters_count, spill_unicode_numbers_count, spill_unicode_marks_count;

/* Decode one code point at s[0..n). Invalid or truncated sequences decode as one byte, returned
 * as U+FFFD with *len = 1, so that every byte of the input is consumed exactly once. */
uint32_t spill_utf8_decode(const char *s, size_t n, int *len);
/* Length in bytes of the UTF-8 sequence starting with byte c (1 for invalid lead bytes). */
int spill_utf8_len(unsigned char c);
/* Encode cp into out (4 bytes room); returns the length. */
int spill_utf8_encode(uint32_t cp, char *out);

int spill_cp_is_letter(uint32_t cp);
int spill_cp_is_number(uint32_t cp);
int spill_cp_is_mark(uint32_t cp);
/* The Unicode White_Space property. */
int spill_cp_is_space(uint32_t cp);

#endif
