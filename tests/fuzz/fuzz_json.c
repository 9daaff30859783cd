/* The JSON reader (common/json.c) on any bytes: parse, walk the tree, look keys up, write strings back. */
#include <string.h>

#include "fuzz.h"
#include "spill_json.h"

static void walk(const spill_json *j, int depth) {
    FUZZ_CHECK(depth <= SPILL_JSON_MAX_DEPTH + 1);
    switch (j->type) {
    case SPILL_JSON_STRING:
        FUZZ_CHECK(j->str && j->str[j->len] == '\0');
        spill_json_write_str(fuzz_null(), j->str);
        break;
    case SPILL_JSON_NUMBER:
        FUZZ_CHECK(j->number == j->number); /* no NaN */
        break;
    case SPILL_JSON_ARRAY:
        for (size_t i = 0; i < j->n; i++) walk(&j->items[i], depth + 1);
        break;
    case SPILL_JSON_OBJECT:
        for (size_t i = 0; i < j->n; i++) {
            FUZZ_CHECK(j->keys[i]);
            /* a lookup by a key the object has finds an item */
            FUZZ_CHECK(spill_json_get(j, j->keys[i]));
            int64_t iv;
            double dv;
            spill_err err;
            spill_json_get_int(j, j->keys[i], -1000, 1000, 0, &iv, "fuzz", &err);
            spill_json_get_num(j, j->keys[i], 0, &dv, "fuzz", &err);
            walk(&j->items[i], depth + 1);
        }
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    spill_json *j = NULL;
    spill_err err;
    if (spill_json_parse((const char *)data, size, "fuzz.json", &j, &err) == 0) {
        FUZZ_CHECK(j);
        walk(j, 0);
        spill_json_free(j);
    } else {
        FUZZ_CHECK(err.msg[0]);
    }
    return 0;
}
