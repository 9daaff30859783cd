/* Command-line parsing (common/args.c), the parser every program's flag table goes through: a table
 * with every kind of flag the programs use (the SPILL_* options among them), argv from the input's
 * NUL-separated words. --help's text is printed to a discarding stream. */
#include <string.h>

#include "fuzz.h"
#include "spill_args.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[65];
    int argc = 0;
    argv[argc++] = (char *)"spill-fuzz";
    for (char *p = buf; p <= buf + size && argc < 64; p += strlen(p) + 1) argv[argc++] = p;
    argv[argc] = NULL;

    const char *model = NULL, *prompt = NULL;
    int n = 0, temp_given = 0, chat = 1, verbose = 0, help = 0;
    uint64_t seed = 0, limit = 0;
    float temp = 1.0f;
    spill_options o;
    spill_options_defaults(&o);
    const spill_arg args[] = {
        SPILL_ARG('m', "model", SPILL_ARG_STRING, &model, 0, 0, "PATH", "a model"),
        SPILL_ARG('p', "prompt", SPILL_ARG_STRING, &prompt, 0, 0, "TEXT", "the prompt"),
        SPILL_ARG('n', "n-predict", SPILL_ARG_INT, &n, 0, 1 << 24, "N", "tokens to generate"),
        SPILL_ARG(0, "seed", SPILL_ARG_U64, &seed, 0, 0, "S", "sampler seed"),
        SPILL_ARG_G(0, "temp", SPILL_ARG_FLOAT, &temp, 0, 0, "T", "temperature", &temp_given),
        SPILL_ARG(0, "host-limit", SPILL_ARG_SIZE, &limit, 0, 0, "BYTES", "host memory limit"),
        SPILL_ARG(0, "no-chat", SPILL_ARG_UNSET, &chat, 0, 0, NULL, "no chat template"),
        SPILL_ARG('v', "verbose", SPILL_ARG_FLAG, &verbose, 0, 0, NULL, "more output"),
        SPILL_ARG(0, "hbm-budget", SPILL_ARG_OPTION, &o, 0, 0, "BYTES", "SPILL_HBM_BUDGET"),
        SPILL_ARG(0, "policy", SPILL_ARG_OPTION, &o, 0, 0, "P", "SPILL_POLICY"),
        SPILL_ARG(0, "threads", SPILL_ARG_OPTION, &o, 0, 0, "N", "SPILL_THREADS"),
        SPILL_ARG(0, "log", SPILL_ARG_OPTION, &o, 0, 0, "0|1", "SPILL_LOG"),
        SPILL_ARG('h', "help", SPILL_ARG_HELP, &help, 0, 0, NULL, "this text"),
        SPILL_ARG_END,
    };
    spill_err err;
    int rc = spill_args_parse(args, argc, argv, 1, "usage: spill-fuzz [options]\n", fuzz_null(), &err);
    FUZZ_CHECK(rc == 0 || rc == 1 || (rc == -1 && err.msg[0]));
    if (rc == 0) {
        FUZZ_CHECK(n >= 0 && n <= 1 << 24);
        FUZZ_CHECK(temp == temp); /* a finite number */
        FUZZ_CHECK(!model || (model >= buf && model <= buf + size));
    }
    free(buf);
    return 0;
}
