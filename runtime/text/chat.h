/* Chat formatting without a template engine: the model's template (tokenizer.chat_template) is
 * recognised by its markers, and the known format is written out directly. */
#ifndef SPILL_CHAT_H
#define SPILL_CHAT_H

#include "gguf.h"

typedef enum { SPILL_CHAT_CHATML, SPILL_CHAT_LLAMA3 } spill_chat_kind;

/* Format one user turn plus the assistant header. *out is malloc'd. A template that is present
 * but not understood is an error that says so; no template means ChatML. */
int spill_chat_format(spill_str tmpl, const char *prompt, char **out, spill_err *err);

/* The role a turn is written as: "system", "user" or "assistant" as they are, OpenAI's "developer" (the
 * system turn of its newer models) as "system"; NULL for any other. */
const char *spill_chat_role(const char *role);

/* A conversation: a role spill_chat_role knows, and the text. */
typedef struct spill_chat_msg {
    const char *role;
    const char *content;
} spill_chat_msg;
/* Format the messages, then the assistant's header that the model continues from. With no system
 * message of its own, a template that writes a literal default system turn (SmolLM2's) gets it. One
 * user message formats as spill_chat_format does. An unknown role is an error naming it. */
int spill_chat_format_messages(spill_str tmpl, const spill_chat_msg *msgs, int n, char **out, spill_err *err);

#endif
