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
    spill_chat_msg m = {"user", prompt};
    return spill_chat_format_messages(tmpl, &m, 1, out, err);
}

const char *spill_chat_role(const char *role) {
    static const char *const roles[] = {"system", "user", "assistant"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(role, roles[i])) return roles[i];
    return !strcmp(role, "developer") ? "system" : NULL;
}

int spill_chat_format_messages(spill_str tmpl, const spill_chat_msg *msgs, int n, char **out, spill_err *err) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int bad = 0;
    const char *mark;
    for (int i = 0; i < n; i++)
        if (!spill_chat_role(msgs[i].role))
            return spill_err_set(err, "messages[%d].role '%.32s' is not system, developer, user or assistant", i,
                                 msgs[i].role);
    int has_system = n > 0 && !strcmp(spill_chat_role(msgs[0].role), "system");
    if (tmpl.len == 0 || find_in(tmpl, "<|im_start|>")) {
        /* ChatML. A template that writes a literal default system turn (SmolLM2 does) gets it too. */
        const char *sys = "<|im_start|>system\n";
        if (!has_system && tmpl.len && (mark = find_in(tmpl, sys))) {
            const char *body = mark + strlen(sys);
            spill_str rest = {body, tmpl.len - (uint64_t)(body - tmpl.ptr)};
            const char *end = find_in(rest, "<|im_end|>");
            if (end && !memchr(body, '{', (size_t)(end - body)) && !memchr(body, '\'', (size_t)(end - body))) {
                bad |= append(&buf, &len, &cap, sys, strlen(sys));
                bad |= append(&buf, &len, &cap, body, (size_t)(end - body));
                bad |= append(&buf, &len, &cap, "<|im_end|>\n", sizeof "<|im_end|>\n" - 1);
            }
        }
        for (int i = 0; i < n; i++) {
            const char *role = spill_chat_role(msgs[i].role); /* developer: system */
            bad |= append(&buf, &len, &cap, "<|im_start|>", sizeof "<|im_start|>" - 1);
            bad |= append(&buf, &len, &cap, role, strlen(role));
            bad |= append(&buf, &len, &cap, "\n", sizeof "\n" - 1);
            bad |= append(&buf, &len, &cap, msgs[i].content, strlen(msgs[i].content));
            bad |= append(&buf, &len, &cap, "<|im_end|>\n", sizeof "<|im_end|>\n" - 1);
        }
        bad |= append(&buf, &len, &cap, "<|im_start|>assistant\n", sizeof "<|im_start|>assistant\n" - 1);
    } else if (find_in(tmpl, "<|start_header_id|>")) {
        for (int i = 0; i < n; i++) {
            const char *role = spill_chat_role(msgs[i].role); /* developer: system */
            bad |= append(&buf, &len, &cap, "<|start_header_id|>", sizeof "<|start_header_id|>" - 1);
            bad |= append(&buf, &len, &cap, role, strlen(role));
            bad |= append(&buf, &len, &cap, "<|end_header_id|>\n\n", sizeof "<|end_header_id|>\n\n" - 1);
            bad |= append(&buf, &len, &cap, msgs[i].content, strlen(msgs[i].content));
            bad |= append(&buf, &len, &cap, "<|eot_id|>", sizeof "<|eot_id|>" - 1);
        }
        bad |= append(&buf, &len, &cap, "<|start_header_id|>assistant<|end_header_id|>\n\n", sizeof "<|start_header_id|>assistant<|end_header_id|>\n\n" - 1);
    } else {
        free(buf);
        return spill_err_set(err, "the model's chat template is not one spill understands (ChatML and Llama-3 are); "
                                  "send the turn markers in the prompt yourself");
    }
    if (bad) {
        free(buf);
        return spill_err_set(err, "out of memory formatting the chat prompt");
    }
    *out = buf;
    return 0;
}
