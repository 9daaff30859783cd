/* Chat formatting (runtime/text/chat.c): the exact text of ChatML and Llama-3 conversations, the
 * default system turn a ChatML template writes (SmolLM2's), and refusals that say what is wrong. */
#include "chat.h"
#include "test_util.h"

static spill_str str(const char *s) { return (spill_str){s, strlen(s)}; }

static void test_chatml(void **s) {
    (void)s;
    spill_err err = {{0}};
    char *out;
    /* SmolLM2's template writes a literal default system turn when none is given */
    const char *smol = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                       "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM<|im_end|>\n' }}{% endif %}"
                       "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}";
    assert_int_equal(spill_chat_format(str(smol), "Hi", &out, &err), 0);
    assert_string_equal(out, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM<|im_end|>\n"
                             "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    free(out);
    spill_chat_msg conv[] = {{"system", "Be brief."}, {"user", "2+2?"}, {"assistant", "4"}, {"user", "3+3?"}};
    assert_int_equal(spill_chat_format_messages(str(smol), conv, 4, &out, &err), 0);
    assert_string_equal(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                             "<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\n3+3?<|im_end|>\n<|im_start|>assistant\n");
    assert_int_equal(strlen(out), strlen("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                                         "<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\n3+3?<|im_end|>\n"
                                         "<|im_start|>assistant\n"));
    free(out);
    /* no template at all: ChatML without a system turn */
    assert_int_equal(spill_chat_format(str(""), "Hi", &out, &err), 0);
    assert_string_equal(out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    free(out);
}

static void test_llama3(void **s) {
    (void)s;
    spill_err err = {{0}};
    char *out;
    const char *tmpl = "{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
                       "{{ message['content'] }}<|eot_id|>{% endfor %}";
    spill_chat_msg conv[] = {{"system", "S"}, {"user", "U"}};
    assert_int_equal(spill_chat_format_messages(str(tmpl), conv, 2, &out, &err), 0);
    const char *want = "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>"
                       "\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
    assert_string_equal(out, want);
    assert_int_equal(strlen(out), strlen(want)); /* no stray bytes after the header */
    free(out);
    /* OpenAI's developer role is written as the system turn */
    spill_chat_msg dev[] = {{"developer", "S"}, {"user", "U"}};
    assert_int_equal(spill_chat_format_messages(str(tmpl), dev, 2, &out, &err), 0);
    assert_string_equal(out, want);
    free(out);
}

static void test_refusals(void **s) {
    (void)s;
    spill_err err = {{0}};
    char *out = NULL;
    spill_chat_msg bad[] = {{"user", "a"}, {"tool", "b"}};
    assert_int_equal(spill_chat_format_messages(str(""), bad, 2, &out, &err), -1);
    assert_non_null(strstr(err.msg, "messages[1].role 'tool'"));
    assert_int_equal(spill_chat_format(str("{{ bos_token }}[INST] {{ content }} [/INST]"), "x", &out, &err), -1);
    assert_non_null(strstr(err.msg, "not one spill understands"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chatml),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
