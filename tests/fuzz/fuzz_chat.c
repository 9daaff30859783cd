/* Chat templates (runtime/text/chat.c): a template recognised by its markers and the messages
 * formatted with it. Input: template, NUL, then messages as "role\x01content" separated by NUL. */
#include <string.h>

#include "chat.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *sep = memchr(buf, 0, size);
    spill_str tmpl = {buf, sep ? (uint64_t)(sep - buf) : size};
    spill_chat_msg msgs[8];
    int n = 0;
    for (char *p = sep ? sep + 1 : NULL; p && p <= buf + size && n < 8;) {
        char *end = p + strlen(p);
        char *role_end = strchr(p, '\x01');
        if (role_end) {
            *role_end = '\0';
            msgs[n++] = (spill_chat_msg){p, role_end + 1};
        } else {
            msgs[n++] = (spill_chat_msg){"user", p};
        }
        p = end < buf + size ? end + 1 : NULL;
    }
    char *out = NULL;
    spill_err err;
    if (spill_chat_format(tmpl, n ? msgs[0].content : "Hi", &out, &err) == 0) FUZZ_CHECK(out);
    else FUZZ_CHECK(err.msg[0]);
    free(out);
    out = NULL;
    if (spill_chat_format_messages(tmpl, msgs, n, &out, &err) == 0) FUZZ_CHECK(out);
    else FUZZ_CHECK(err.msg[0]);
    free(out);
    free(buf);
    return 0;
}
