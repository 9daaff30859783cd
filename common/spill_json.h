/* A small strict JSON reader (RFC 8259) for config.json, tokenizer_config.json, safetensors
 * headers and hardware profiles. Strict: no comments, no trailing commas, no NaN, UTF-8 checked,
 * duplicate object keys refused, nesting limited. Errors give the byte offset, line and column.
 * Why not a library: see docs/json.md. */
#ifndef SPILL_JSON_H
#define SPILL_JSON_H

#include "spill_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum spill_json_type {
    SPILL_JSON_NULL,
    SPILL_JSON_BOOL,
    SPILL_JSON_NUMBER,
    SPILL_JSON_STRING,
    SPILL_JSON_ARRAY,
    SPILL_JSON_OBJECT,
} spill_json_type;

typedef struct spill_json spill_json;
struct spill_json {
    spill_json_type type;
    int boolean;
    double number;
    int is_int;      /* the number was written as an integer that fits int64 */
    int64_t integer; /* exact when is_int */
    char *str;       /* STRING: decoded, NUL-terminated (may contain NUL; see len) */
    size_t len;
    size_t n;          /* ARRAY / OBJECT: number of items */
    spill_json *items; /* (n) values */
    char **keys;       /* OBJECT: (n) decoded keys, in document order */
    size_t offset;     /* where the value starts in the text */
};

#define SPILL_JSON_MAX_DEPTH 128

/* Parse `len` bytes. On success *out owns everything; free with spill_json_free. `what` names the
 * document in messages ("config.json"). */
int spill_json_parse(const char *text, size_t len, const char *what, spill_json **out, spill_err *err);
/* Read a whole file (refusing one larger than max_bytes) and parse it. */
int spill_json_parse_file(const char *path, size_t max_bytes, spill_json **out, spill_err *err);
void spill_json_free(spill_json *j);

/* Lookups: NULL when absent or of another type. */
const spill_json *spill_json_get(const spill_json *obj, const char *key);
const spill_json *spill_json_get_type(const spill_json *obj, const char *key, spill_json_type t);
/* Typed getters with a default for "absent"; -1 with a message when present but of the wrong type
 * or out of range. */
int spill_json_get_int(const spill_json *obj, const char *key, int64_t lo, int64_t hi, int64_t def, int64_t *out,
                       const char *what, spill_err *err);
int spill_json_get_num(const spill_json *obj, const char *key, double def, double *out, const char *what,
                       spill_err *err);
const char *spill_json_type_name(spill_json_type t);
/* Write s as a JSON string literal (quotes, escapes). */
void spill_json_write_str(FILE *f, const char *s);

#ifdef __cplusplus
}
#endif
#endif
