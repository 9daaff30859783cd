/* The regular expressions of tokenizer.json (Split pre-tokenizers, Replace normalizers and decoders)
 * and of the GGUF pre-tokenizer types, over PCRE2 in UTF + UCP mode. The tokenizers library
 * compiles them with Oniguruma (Ruby syntax); the differences that matter are covered here:
 * ^ and $ match at line boundaries (PCRE2_MULTILINE), and \p{..}, \s, (?i:..) behave alike.
 * Subjects must be valid UTF-8 (the tokenizer repairs its input first). */
#ifndef SPILL_TEXT_REGEX_H
#define SPILL_TEXT_REGEX_H

#include <stddef.h>
#include <stdint.h>

#include "spill_common.h"

typedef struct spill_regex spill_regex;

/* Compile `pattern` (pattern_len bytes). literal: match the text as it is (a tokenizer.json
 * {"String": ...} pattern). `what` names the pattern in messages (file and JSON path). */
spill_regex *spill_regex_compile(const char *pattern, size_t pattern_len, int literal, const char *what,
                                 spill_err *err);
void spill_regex_free(spill_regex *re);

/* Find the next match in s[0..n) starting at or after `from` (a character boundary). Returns 1 and
 * the match [*ms, *me), 0 when there is none, -1 with a message when the engine fails (a match
 * limit) or s[0..n) is not valid UTF-8 (checked on every call). An empty match is reported like any
 * other; spill_regex_next steps over it. */
int spill_regex_find(const spill_regex *re, const char *s, size_t n, size_t from, size_t *ms, size_t *me,
                     spill_err *err);

/* Iterate the non-overlapping matches of s[0..n) as Oniguruma's find_iter does (the tokenizers
 * library's): the search resumes where the last match ended, and an empty match right at the end
 * of the previous match is skipped by stepping one character. Start with it = SPILL_REGEX_ITER_INIT.
 * Returns 1 with a match, 0 at the end, -1 on an engine error or when s[0..n) is not valid UTF-8
 * (checked on the first call: PCRE2 runs without its own check, and given invalid UTF-8 it may read
 * past the end). */
typedef struct spill_regex_iter {
    size_t pos, last_end;
    int checked; /* s[0..n) found valid UTF-8 */
} spill_regex_iter;
#define SPILL_REGEX_ITER_INIT {0, SIZE_MAX, 0}
/* for a caller that has just found s[0..n) valid UTF-8 itself: the text is not scanned again */
#define SPILL_REGEX_ITER_CHECKED {0, SIZE_MAX, 1}
int spill_regex_next(const spill_regex *re, const char *s, size_t n, spill_regex_iter *it, size_t *ms, size_t *me,
                     spill_err *err);

#endif
