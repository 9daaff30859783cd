/* server/api.c's writer of JSON strings: every answer spill-server sends is UTF-8, whatever bytes a
 * token holds. A whole, shortest-form UTF-8 sequence passes as it is; every other byte (a lead byte
 * that no sequence starts with, an overlong form, a surrogate, a code point past U+10FFFF, a
 * sequence cut short) becomes one U+FFFD; control characters are escaped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "test_util.h"

/* s[0..n) as the writer writes it, without the quotes */
static char *written(const char *s, size_t n) {
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    assert_non_null(f);
    spill_api_write_str(f, s, n);
    assert_int_equal(fclose(f), 0);
    assert_true(len >= 2 && out[0] == '"' && out[len - 1] == '"');
    memmove(out, out + 1, len - 2);
    out[len - 2] = 0;
    return out;
}

#define FFFD "\xef\xbf\xbd"

static void expect(const char *in, size_t n, const char *want) {
    char *got = written(in, n);
    if (strcmp(got, want)) fail_msg("%zu bytes written as \"%s\", not \"%s\"", n, got, want);
    free(got);
}

static void test_valid_passes(void **s) {
    (void)s;
    expect("plain", 5, "plain");
    expect("\xc3\xa9", 2, "\xc3\xa9");                   /* U+00E9 */
    expect("\xe2\x82\xac", 3, "\xe2\x82\xac");           /* U+20AC */
    expect("\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80");   /* U+1F600 */
    expect("\xf4\x8f\xbf\xbf", 4, "\xf4\x8f\xbf\xbf");   /* U+10FFFF, the last */
    expect("\xee\x80\x80", 3, "\xee\x80\x80");           /* U+E000, past the surrogates */
}

static void test_invalid_replaced(void **s) {
    (void)s;
    expect("\xf8\x80\x80", 3, FFFD FFFD FFFD);           /* 0xF8 starts no sequence */
    expect("\xff\x80\x80\x80", 4, FFFD FFFD FFFD FFFD);
    expect("\xf5\x80\x80\x80", 4, FFFD FFFD FFFD FFFD);  /* past U+10FFFF */
    expect("\xf4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD);  /* U+110000 */
    expect("\xc0\x80", 2, FFFD FFFD);                    /* overlong NUL */
    expect("\xe0\x80\x80", 3, FFFD FFFD FFFD);           /* overlong */
    expect("\xf0\x80\x80\x80", 4, FFFD FFFD FFFD FFFD);  /* overlong */
    expect("\xed\xa0\x80", 3, FFFD FFFD FFFD);           /* a surrogate */
    expect("a\xe2\x82", 3, "a" FFFD FFFD);               /* cut short */
    expect("\xe2\x82" "b", 3, FFFD FFFD "b");            /* a continuation missing */
}

static void test_escapes(void **s) {
    (void)s;
    expect("\"\\\n\r\t", 5, "\\\"\\\\\\n\\r\\t");
    expect("\x01\x7f", 2, "\\u0001\\u007f");
    expect("a\0b", 3, "a\\u0000b");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_passes),
        cmocka_unit_test(test_invalid_replaced),
        cmocka_unit_test(test_escapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
