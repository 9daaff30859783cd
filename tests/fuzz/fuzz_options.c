/* The SPILL_* option strings (common/options.c): lines "NAME=VALUE" (a flag name or a variable name)
 * through spill_options_set; the first line through the environment as well. */
#include <string.h>

#include "fuzz.h"
#include "spill_options.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = '\0';
    spill_options o;
    spill_options_defaults(&o);
    spill_err err;
    int first = 1;
    for (char *line = buf, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        char *eq = strchr(line, '=');
        if (!eq) continue;
        *eq = '\0';
        if (spill_options_set(&o, line, eq + 1, &err)) FUZZ_CHECK(err.msg[0]);
        if (first && !strncmp(line, "SPILL_", 6) && line[6]) {
            first = 0;
            if (setenv(line, eq + 1, 1) == 0) {
                spill_options e;
                spill_options_defaults(&e);
                if (spill_options_from_env(&e, fuzz_null(), &err)) FUZZ_CHECK(err.msg[0]);
                unsetenv(line);
            }
        }
    }
    /* strings stay NUL-terminated inside their fields */
    FUZZ_CHECK(memchr(o.backend, 0, sizeof o.backend) && memchr(o.alloc_log, 0, sizeof o.alloc_log) &&
               memchr(o.tokenizer_pre, 0, sizeof o.tokenizer_pre));
    spill_options_print(&o, fuzz_null());
    free(buf);
    return 0;
}
