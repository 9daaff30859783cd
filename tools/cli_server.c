/* spill-server's command line (cli.h). */
#include <arpa/inet.h>
#include <strings.h>

#include "cli.h"
#include "spill_args.h"

static const char usage_head[] =
    "usage: spill-server [-m MODEL] [--host ADDR] [--port N] [options]\n"
    "\n"
    "An OpenAI-compatible server: POST /v1/completions and /v1/chat/completions (streamed as server-sent\n"
    "events with \"stream\": true), GET /v1/models, /health and /metrics (Prometheus text). Requests are\n"
    "batched continuously: every running sequence advances in one step. A full queue answers 429 with\n"
    "Retry-After; SIGTERM finishes what is running, then exits. Every SPILL_* variable (spill-info\n"
    "--options) is read too; a flag of the same name wins.\n"
    "\n";

static void make_args(spill_server_opts *o, int *help, spill_arg *a) {
    int n = 0;
#define ARG(...) a[n++] = (spill_arg)SPILL_ARG(__VA_ARGS__)
#define ARG_G(...) a[n++] = (spill_arg)SPILL_ARG_G(__VA_ARGS__)
    ARG('m', "model", SPILL_ARG_STRING, &o->model, 0, 0, "PATH", "GGUF file or Hugging Face directory (default: $SPILL_MODEL, else\n"
        "~/.cache/spill/" SPILL_DEFAULT_MODEL_NAME ", fetched once by scripts/fetch-model.sh)");
    ARG(0, "host", SPILL_ARG_STRING, &o->host, 0, 0, "ADDR", "the IPv4 address to listen on (default: 127.0.0.1; 0.0.0.0 for every\ninterface; localhost means 127.0.0.1)");
    ARG(0, "port", SPILL_ARG_INT, &o->port, 0, 65535, "N", "the port (default: 8080; 0 = any free port, printed on stderr)");
    ARG(0, "name", SPILL_ARG_STRING, &o->name, 0, 0, "NAME", "the model's name in /v1/models and the answers (default: the file's)");
    ARG('c', "ctx-size", SPILL_ARG_INT, &o->ctx, 1, 1 << 24, "N", "context of each sequence in tokens (default: min(4096, the model's))");
    ARG('P', "parallel", SPILL_ARG_INT, &o->parallel, 1, 256, "N", "sequences decoded at once: the slots (default: 16); more requests wait");
    ARG('b', "batch-size", SPILL_ARG_INT, &o->batch, 1, 4096, "N", "tokens per engine step, decode and prompt chunks together (default: 64)");
    ARG(0, "prefill-chunk", SPILL_ARG_INT, &o->chunk, 1, 4096, "N", "prompt tokens of one request per step (default: the batch)");
    ARG(0, "prefill-budget", SPILL_ARG_INT, &o->budget, 0, 4096, "N", "prompt tokens of all requests per step while others decode: bounds the\n"
        "time between their tokens (default: 8; 0 = the batch); more where that fills the step to one token per\n"
        "running sequence; with nothing decoding, prompts fill the batch");
    ARG(0, "itl-target", SPILL_ARG_INT, &o->itl_target, 0, 600000, "MS", "aim for engine steps of at most MS milliseconds, the time between a\n"
        "request's tokens: requests wait in the queue while the running ones fill a step as timed so far\n"
        "(the first runs alone until a step is timed), and prompts fill a step only up to it (default: 0,\n"
        "no target: --parallel and --prefill-budget alone bound a step)");
    ARG(0, "max-waiting", SPILL_ARG_INT, &o->max_waiting, 1, 1 << 20, "N", "requests queued beyond the running ones and the free slots before 429 (default: 64)");
    ARG(0, "kv-block", SPILL_ARG_INT, &o->kv_block, 1, 65536, "N", "tokens per KV cache block, a power of two (default: 64)");
    ARG(0, "kv-type", SPILL_ARG_OPTION, &o->env, 0, 0, "TYPE", "KV cache elements: f32, f16 or bf16 (as spill-generate)");
    ARG(0, "kv-blocks", SPILL_ARG_INT, &o->kv_blocks, 1, 1 << 24, "N", "KV cache blocks in all (default: every slot's whole context); fewer\n"
        "admit fewer requests at once and preempt (recompute) when they run out");
    ARG('t', "threads", SPILL_ARG_INT, &o->threads, 1, 1024, "N", "CPU threads (default: $SPILL_THREADS, else all online CPUs)");
    ARG(0, "host-node", SPILL_ARG_OPTION, &o->env, 0, 0, "N", "host NUMA node for the threads and host memory (as spill-generate)");
    ARG(0, "device", SPILL_ARG_OPTION, &o->env, 0, 0, "NAME", "where the forward pass runs: auto, cpu or cuda (as spill-generate)");
    ARG(0, "cuda-graphs", SPILL_ARG_OPTION, &o->env, 0, 0, "0|1", "decode steps as CUDA graphs with --device cuda (as spill-generate)");
    ARG_G(0, "policy", SPILL_ARG_OPTION, &o->env, 0, 0, "NAME", "placement policy: host, fault, pin, stream or auto (as spill-generate)",
          &o->policy_set);
    ARG(0, "profile", SPILL_ARG_STRING, &o->profile, 0, 0, "NAME", "hardware profile the plan is made for, or auto (as spill-generate)");
    ARG(0, "profile-file", SPILL_ARG_STRING, &o->profile_file, 0, 0, "FILE", "a hardware profile in JSON");
    ARG(0, "backend", SPILL_ARG_OPTION, &o->env, 0, 0, "NAME", "memory backend (as spill-generate)");
    ARG(0, "hbm-budget", SPILL_ARG_OPTION, &o->env, 0, 0, "SIZE", "most GPU memory to use (as spill-generate)");
    ARG(0, "host-limit", SPILL_ARG_OPTION, &o->env, 0, 0, "SIZE", "most host memory to allocate (as spill-generate)");
    ARG(0, "tokenizer-pre", SPILL_ARG_OPTION, &o->env, 0, 0, "TYPE", "GGUF: tokenize as this tokenizer.ggml.pre type (as spill-generate)");
    ARG(0, "no-mmap", SPILL_ARG_UNSET, &o->use_mmap, 0, 0, NULL, "copy weights into memory instead of reading the file in place");
    ARG('h', "help", SPILL_ARG_HELP, help, 0, 0, NULL, "show this help");
    SPILL_ASSERT(n < SPILL_CLI_MAX_ARGS);
    a[n] = (spill_arg)SPILL_ARG_END;
#undef ARG
#undef ARG_G
}

int spill_server_cli(spill_server_opts *o, const spill_options *env, int argc, char **argv, FILE *help_out,
                     spill_err *err) {
    *o = (spill_server_opts){.host = "127.0.0.1", .port = 8080, .batch = 64, .parallel = 16, .budget = 8, .use_mmap = 1,
                             .env = *env};
    spill_arg args[SPILL_CLI_MAX_ARGS];
    int help = 0;
    make_args(o, &help, args);
    int rc = spill_args_parse(args, argc, argv, 1, usage_head, help_out, err);
    if (rc) return rc;
    if (o->kv_block & (o->kv_block - 1)) return spill_err_set(err, "--kv-block expects a power of two, got %d", o->kv_block);
    /* the address before the model loads (a minute for a large one), not after */
    if (!strcasecmp(o->host, "localhost")) o->host = "127.0.0.1";
    struct in_addr a4;
    if (inet_pton(AF_INET, o->host, &a4) != 1)
        return spill_err_set(err, "--host '%s' is not an IPv4 address (e.g. 127.0.0.1, 0.0.0.0 or localhost)", o->host);
    return 0;
}
