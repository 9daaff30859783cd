#include "chat.h"

static const char *find_in(spill_str s, const char *needle) {
    size_t n = strlen(needle);
    for (uint64_t i = 0; i + n <= s.len; i++)
        if (!memcmp(s.ptr + i, needle, n)) return s.ptr + i;
    return NULL;
}

static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t nc = (*len + n + 1) * 2;
        char *nb = realloc(*buf, nc);
        if (!nb) return -1;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
    return 0;
}

int spill_chat_format(spill_str tmpl, const char *prompt, char **out, spill_err *err) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int bad = 0;
    const char *mark;
    if (tmpl.len == 0 || find_in(tmpl, "<|im_start|>")) {
        /* ChatML. A template that writes a literal default system turn (SmolLM2 does) gets it too. */
        const char *sys = "<|im_start|>system\n";
        if (tmpl.len && (mark = find_in(tmpl, sys))) {
            const char *body = mark + strlen(sys);
            spill_str rest = {body, tmpl.len - (uint64_t)(body - tmpl.ptr)};
            const char *end = find_in(rest, "<|im_end|>");
            if (end && !memchr(body, '{', (size_t)(end - body)) && !memchr(body, '\'', (size_t)(end - body))) {
                bad |= append(&buf, &len, &cap, sys, strlen(sys));
                bad |= append(&buf, &len, &cap, body, (size_t)(end - body));
                bad |= append(&buf, &len, &cap, "<|im_end|>\n", 11);
            }
        }
        bad |= append(&buf, &len, &cap, "<|im_start|>user\n", 17);
        bad |= append(&buf, &len, &cap, prompt, strlen(prompt));
        bad |= append(&buf, &len, &cap, "<|im_end|>\n<|im_start|>assistant\n", 33);
    } else if (find_in(tmpl, "<|start_header_id|>")) {
        bad |= append(&buf, &len, &cap, "<|start_header_id|>user<|end_header_id|>\n\n", 42);
        bad |= append(&buf, &len, &cap, prompt, strlen(prompt));
        bad |= append(&buf, &len, &cap, "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", 57);
    } else {
        return spill_err_set(err, "--chat: the model's chat template is not one spill understands (ChatML and "
                                  "Llama-3 are); run without --chat and write the turn markers into -p yourself");
    }
    if (bad) {
        free(buf);
        return spill_err_set(err, "out of memory formatting the chat prompt");
    }
    *out = buf;
    return 0;
}
