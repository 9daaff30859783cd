/* spill-generate's command line (cli.h). */
#include <math.h>
#include <string.h>

#include "cli.h"
#include "disk.h"
#include "sampler.h"
#include "spill_args.h"

static const char usage_head[] =
    "usage: spill-generate [-m MODEL] [-p PROMPT] [options]\n"
    "\n"
    "Generate text with a Llama-family model (a GGUF file or a Hugging Face directory). stdout gets the\n"
    "prompt and the continuation, streamed; stderr gets load progress and a closing line with token\n"
    "counts, speeds and bytes per memory tier. Every SPILL_* environment variable (spill-info --options\n"
    "lists them) sets the flag of the same name; a flag on the command line wins. SPILL_STATS=1 prints\n"
    "memory statistics at exit.\n"
    "\n";

static void make_args(spill_generate_opts *o, int *help, spill_arg *a) {
    int n = 0;
#define ARG(...) a[n++] = (spill_arg)SPILL_ARG(__VA_ARGS__)
#define ARG_G(...) a[n++] = (spill_arg)SPILL_ARG_G(__VA_ARGS__)
    ARG('m', "model", SPILL_ARG_STRING, &o->model, 0, 0, "PATH", "GGUF file or Hugging Face directory (default: $SPILL_MODEL, else\n"
        "~/.cache/spill/" SPILL_DEFAULT_MODEL_NAME ", fetched once by scripts/fetch-model.sh)");
    ARG('p', "prompt", SPILL_ARG_STRING, &o->prompt, 0, 0, "TEXT", "prompt (default: \"" SPILL_GENERATE_DEFAULT_PROMPT "\")");
    ARG('f', "file", SPILL_ARG_STRING, &o->prompt_file, 0, 0, "FILE", "read the prompt from FILE instead");
    ARG('n', "n-predict", SPILL_ARG_INT, &o->n_predict, 0, 1 << 24, "N", "generate at most N tokens (default: 128); stops earlier at end of text");
    ARG(0, "temp", SPILL_ARG_FLOAT, &o->temp, 0, 0, "T", "sampling temperature; 0 is greedy and deterministic (default: 0.8)");
    ARG(0, "top-k", SPILL_ARG_INT, &o->top_k, 0, 1 << 24, "K", "sample only among the K most likely tokens; 0 = all (default: 40)");
    ARG(0, "top-p", SPILL_ARG_FLOAT, &o->top_p, 0, 0, "P", "sample only among the most likely tokens whose mass reaches P (default: 0.95)");
    ARG(0, "presence-penalty", SPILL_ARG_FLOAT, &o->presence_penalty, 0, 0, "P", "take P off the logit of every token already generated (-2 to 2,\n"
        "as OpenAI's presence_penalty; the prompt's tokens do not count; default: 0, off)");
    ARG(0, "frequency-penalty", SPILL_ARG_FLOAT, &o->frequency_penalty, 0, 0, "F", "take F times its count off the logit of every token already\n"
        "generated (-2 to 2, as OpenAI's frequency_penalty; default: 0, off); neither\n"
        "penalty goes with --draft-skip");
    ARG(0, "repeat-penalty", SPILL_ARG_FLOAT, &o->repeat_penalty, 0, 0, "R", "divide the logit of every token among the last --repeat-last-n of the\n"
        "prompt and the text by R when it is positive, multiply it by R when not\n"
        "(0.001 to 10; as llama.cpp's --repeat-penalty and vLLM's\n"
        "repetition_penalty; not with --draft-skip; default: 1, off)");
    ARG(0, "repeat-last-n", SPILL_ARG_INT, &o->repeat_last_n, -1, SPILL_REPEAT_WINDOW_MAX, "N", "how many of the last tokens --repeat-penalty looks at; -1: every\n"
        "token of the prompt and the text, 0: the penalty off (default: 64)");
    ARG_G(0, "seed", SPILL_ARG_U64, &o->seed, 0, 0, "S", "seed for sampling; the same seed gives the same text (default: from the clock)",
        &o->seed_set);
    ARG(0, "chat", SPILL_ARG_FLAG, &o->chat, 0, 0, NULL, "wrap the prompt in the model's chat template (ChatML for SmolLM2) as one\n"
        "user turn and stop at the end of the assistant's turn");
    ARG('t', "threads", SPILL_ARG_INT, &o->threads, 1, 1024, "N", "CPU threads (default: $SPILL_THREADS, else all online CPUs)");
    ARG(0, "host-node", SPILL_ARG_OPTION, &o->env, 0, 0, "N", "host NUMA node to run the threads on and take host memory from first\n"
        "(the weights beside the threads that read them; default: -1, the system's\n"
        "choice; with it, -t defaults to that node's CPUs)");
    ARG('c', "ctx-size", SPILL_ARG_INT, &o->ctx, 1, 1 << 24, "N", "context length in tokens: prompt plus generated (default: min(4096, the model's))");
    ARG('b', "batch-size", SPILL_ARG_INT, &o->batch, 1, 4096, "N", "prompt tokens processed per forward step (default: 64)");
    ARG(0, "n-parallel", SPILL_ARG_INT, &o->n_parallel, 1, 64, "N", "generate N continuations of the prompt (1..64, default 1); they share\n"
        "the prompt's KV blocks, and each samples with seed S+i. With N > 1 the texts are\n"
        "printed one after another when all are done, not streamed");
    ARG(0, "draft-skip", SPILL_ARG_STRING, &o->draft_skip, 0, 0, "N|LIST", "self-speculative decoding: a draft that is this model without some\n"
        "layers proposes --draft-k tokens, one step of the whole model checks them (the\n"
        "text is what plain decoding gives). N: skip the N layers that change the hidden\n"
        "state least, found by a calibration run once and kept in MODEL.spill-draft.json;\n"
        "LIST: these layers, e.g. 3,5,10-14 (one layer: 7,). Off by default");
    ARG(0, "draft-k", SPILL_ARG_INT, &o->draft_k, 1, 64, "K", "tokens the draft proposes per round (default: 3; at most --batch-size - 1)");
    ARG(0, "draft-vocab", SPILL_ARG_INT, &o->draft_vocab, 0, 1 << 30, "N", "the draft proposes only tokens 0..N-1 and on the CPU its output head\n"
        "reads only their rows (a small model's head is a large share of its bytes; byte-pair\n"
        "vocabularies give the frequent tokens the low ids). The text stays exact.\n"
        "Default 0: the whole vocabulary");
    ARG(0, "draft-file", SPILL_ARG_STRING, &o->draft_file, 0, 0, "FILE", "where the draft's calibration is read and written (default: beside the model)");
    ARG(0, "kv-block", SPILL_ARG_INT, &o->kv_block, 1, 65536, "N", "tokens per KV cache block, a power of two (default: 64)");
    ARG(0, "kv-type", SPILL_ARG_OPTION, &o->env, 0, 0, "TYPE", "KV cache elements: f32, f16 or bf16 (half the bytes: twice the context; default: f32)");
    ARG(0, "device", SPILL_ARG_OPTION, &o->env, 0, 0, "NAME", "where the forward pass runs: auto, cpu or cuda (default: auto = cpu;\n"
        "docs/status.md says what has run on a GPU). cuda multiplies every weight through\n"
        "cuBLAS over memory placed by the plan (default policy pin, profile auto: the one\n"
        "this machine's GPU matches, budget: free HBM minus SPILL_HBM_RESERVE)");
    ARG(0, "cuda-graphs", SPILL_ARG_OPTION, &o->env, 0, 0, "0|1", "with --device cuda: replay each decode step as one CUDA graph where the\n"
        "plan allows (no ring, no disk tier) (default: 1; run on an H200 and an H100: docs/results-gpu.md)");
    ARG_G(0, "policy", SPILL_ARG_OPTION, &o->env, 0, 0, "NAME", "placement policy: host (everything in host memory, the CPU's default),\n"
        "fault, pin, stream or auto (see spill-plan --help). On the CPU, HBM is emulated in\n"
        "host memory so that any plan runs, with the same tokens; give it --hbm-budget (and\n"
        "a GPU --profile such as gh200-96) for the plan to put anything there", &o->policy_set);
    ARG(0, "profile", SPILL_ARG_STRING, &o->profile, 0, 0, "NAME", "hardware profile the plan is made for: gh200-96, gh200-144, gb200, gb300,\n"
        "gb10, h100-pcie, h200-pcie, cpu, or auto: the one this machine's GPU matches\n"
        "(default: cpu; with --device cuda, auto)");
    ARG(0, "profile-file", SPILL_ARG_STRING, &o->profile_file, 0, 0, "FILE", "a hardware profile in JSON (spill-bench tiers --profile-out writes one)");
    ARG(0, "backend", SPILL_ARG_OPTION, &o->env, 0, 0, "NAME", "memory backend: auto, host, emulated, system, cuda-managed or cuda-device\n"
        "(default: auto = host on the CPU, or emulated when the plan has HBM in it; from\n"
        "the GPU's attributes with --device cuda)");
    ARG(0, "hbm-budget", SPILL_ARG_OPTION, &o->env, 0, 0, "SIZE", "most GPU memory to use, e.g. 80G (default: free HBM minus 1G with a GPU;\n"
        "none on the CPU)");
    ARG(0, "host-limit", SPILL_ARG_OPTION, &o->env, 0, 0, "SIZE", "most host memory to use, e.g. 16G: weights (the mapped file's pages\n"
        "included), KV cache and buffers. Layers that do not fit are read from the model\n"
        "file every step (the disk tier, --disk-io) (default: what the machine has)");
    ARG(0, "disk-io", SPILL_ARG_STRING, &o->disk_io, 0, 0, "MODE", "how layers on disk (past --host-limit) are read: uring (O_DIRECT reads\n"
        "queued with io_uring, the default) or mmap (through the mapping, pages dropped\n"
        "after each use: what a page cache too small for the model gives)");
    ARG(0, "alloc-log", SPILL_ARG_OPTION, &o->env, 0, 0, "FILE", "write a CSV line per memory-backend call to FILE");
    ARG(0, "tokenizer-pre", SPILL_ARG_OPTION, &o->env, 0, 0, "TYPE", "GGUF: tokenize as this tokenizer.ggml.pre type, for a file whose type is\n"
        "missing or not one spill knows (the known ones are listed when a file is refused)");
    ARG(0, "no-mmap", SPILL_ARG_UNSET, &o->use_mmap, 0, 0, NULL, "copy weights into memory from the allocator instead of reading the file in place");
    ARG('v', "verbose", SPILL_ARG_FLAG, &o->verbose, 0, 0, NULL, "print model details, the plan and the backend on stderr");
    ARG('h', "help", SPILL_ARG_HELP, help, 0, 0, NULL, "show this help");
    SPILL_ASSERT(n < SPILL_CLI_MAX_ARGS);
    a[n] = (spill_arg)SPILL_ARG_END;
#undef ARG
#undef ARG_G
}

int spill_generate_cli(spill_generate_opts *o, const spill_options *env, int argc, char **argv, FILE *help_out,
                       spill_err *err) {
    *o = (spill_generate_opts){.n_predict = 128, .top_k = 40, .temp = 0.8f, .top_p = 0.95f, .repeat_penalty = 1,
                               .repeat_last_n = 64, .batch = 64, .use_mmap = 1, .n_parallel = 1, .env = *env};
    spill_arg args[SPILL_CLI_MAX_ARGS];
    int help = 0;
    make_args(o, &help, args);
    int rc = spill_args_parse(args, argc, argv, 1, usage_head, help_out, err);
    if (rc) return rc;
    if (o->draft_skip && o->n_parallel > 1)
        return spill_err_set(err, "--draft-skip decodes one sequence; it cannot be combined with --n-parallel %d",
                             o->n_parallel);
    /* the draft's settings without a draft would be ignored without a word */
    if (!o->draft_skip && (o->draft_k || o->draft_vocab || o->draft_file))
        return spill_err_set(err, "%s is for self-speculative decoding: give --draft-skip N too",
                             o->draft_k ? "--draft-k" : o->draft_vocab ? "--draft-vocab" : "--draft-file");
    if (!o->draft_k) o->draft_k = 3;
    const float pen[2] = {o->presence_penalty, o->frequency_penalty};
    for (int i = 0; i < 2; i++)
        if (!(fabsf(pen[i]) <= SPILL_PENALTY_MAX))
            return spill_err_set(err, "--%s-penalty %g is out of range; use -%d to %d", i ? "frequency" : "presence", pen[i],
                                 SPILL_PENALTY_MAX, SPILL_PENALTY_MAX);
    if (!(o->repeat_penalty >= SPILL_REPEAT_MIN && o->repeat_penalty <= SPILL_REPEAT_MAX))
        return spill_err_set(err, "--repeat-penalty %g is out of range; use %g to %g (1: off)", o->repeat_penalty,
                             (double)SPILL_REPEAT_MIN, (double)SPILL_REPEAT_MAX);
    if (o->repeat_last_n == 0) o->repeat_penalty = 1; /* llama.cpp's way to turn it off */
    /* a draft's proposals are checked against the target's distribution a round at a time, which the
       penalties would change within the round */
    if (o->draft_skip && (o->presence_penalty != 0 || o->frequency_penalty != 0 || o->repeat_penalty != 1))
        return spill_err_set(err, "--%s-penalty cannot be combined with --draft-skip (speculative decoding)",
                             o->presence_penalty != 0 ? "presence" : o->frequency_penalty != 0 ? "frequency" : "repeat");
    if (o->kv_block & (o->kv_block - 1))
        return spill_err_set(err, "--kv-block expects a power of two, got %d", o->kv_block);
    /* the spellings before the model loads; the layer numbers against the model after */
    if (o->draft_skip && (!*o->draft_skip || o->draft_skip[strspn(o->draft_skip, "0123456789,-")]))
        return spill_err_set(err, "--draft-skip '%s': give a count (8) or layers (3,5,10-14)", o->draft_skip);
    spill_disk_mode disk_mode;
    if (spill_disk_mode_parse(o->disk_io, &disk_mode, err)) return -1;
    spill_sampler smp; /* the sampling flags are checked before time goes into a load */
    if (spill_sampler_init(&smp, 1, o->temp, o->top_k, o->top_p, 1, err)) return -1;
    spill_sampler_free(&smp);
    return 0;
}
