/* spill-plan's command line (cli.h). */
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "spill_args.h"
#include "spill_policy.h"

static const char usage_head[] =
    "usage: spill-plan (-m MODEL.gguf | -m HF_DIR | --config config.json) [options]\n"
    "\n"
    "Prints, per region (layer weights, KV cache per layer, embedding, head), the tier, the\n"
    "advice and when it is prefetched; totals per tier; and the decode and prefill speed each\n"
    "policy is predicted to reach. Reads only the GGUF header or config.json: no weights.\n"
    "Every speed printed is a prediction of the cost model (docs/policies.md), not a measurement.\n"
    "\n";

int spill_plan_cli(spill_plan_opts *o, const spill_options *env, int argc, char **argv, FILE *help_out, spill_err *err) {
    *o = (spill_plan_opts){.profile = "gh200-96", .policy = "all", .batch = 1, .prompt = 512, .env = *env};
    int help = 0;
    const spill_arg args[] = {
        SPILL_ARG('m', "model", SPILL_ARG_STRING, &o->model, 0, 0, "PATH", "a GGUF file, or a Hugging Face directory with config.json"),
        SPILL_ARG(0, "config", SPILL_ARG_STRING, &o->config, 0, 0, "FILE", "a Hugging Face config.json (Llama, Mistral, Qwen2)"),
        SPILL_ARG(0, "dtype", SPILL_ARG_STRING, &o->dtype, 0, 0, "T", "weights' type for --config: bf16, f16 or f32 (default: torch_dtype)"),
        SPILL_ARG(0, "profile", SPILL_ARG_STRING, &o->profile, 0, 0, "NAME",
         "built-in hardware profile: gh200-96, gh200-144, gb200, gb300, gb10,\nh100-pcie, h200-pcie, cpu, or auto: "
         "the one this machine matches\n(default: gh200-96)"),
        SPILL_ARG(0, "profile-file", SPILL_ARG_STRING, &o->profile_file, 0, 0, "F",
         "a hardware profile in JSON (spill-bench tiers --profile-out writes one)"),
        SPILL_ARG_G(0, "hbm-budget", SPILL_ARG_OPTION, &o->env, 0, 0, "SIZE",
         "HBM to plan with, e.g. 80G (default: the profile's HBM minus\nSPILL_HBM_RESERVE, 1G)", &o->budget_set),
        SPILL_ARG(0, "host-limit", SPILL_ARG_OPTION, &o->env, 0, 0, "SIZE",
         "host memory for weights (the mapped file's pages included) and the KV\ncache: layers past it are read from "
         "the model file every step, a few\nahead (the disk tier; default: no limit)"),
        SPILL_ARG(0, "ctx", SPILL_ARG_INT, &o->ctx, 1, 1 << 24, "N", "context length in tokens for the KV cache (default: the model's)"),
        SPILL_ARG(0, "kv-type", SPILL_ARG_OPTION, &o->env, 0, 0, "TYPE",
         "the KV cache's elements: f32, f16 or bf16 (as spill-generate; default: f32)"),
        SPILL_ARG(0, "batch", SPILL_ARG_INT, &o->batch, 1, 1 << 24, "B", "sequences decoded together (default: 1)"),
        SPILL_ARG(0, "prompt-tokens", SPILL_ARG_INT, &o->prompt, 1, 1 << 24, "N", "prompt length for the prefill prediction (default: 512)"),
        SPILL_ARG(0, "policy", SPILL_ARG_STRING, &o->policy, 0, 0, "P",
         "host, fault, pin, stream, auto, or all (default: all: fault, pin, stream\nand auto's predictions side by side, and auto's plan region by region)"),
        SPILL_ARG(0, "json", SPILL_ARG_FLAG, &o->json, 0, 0, NULL, "the same as JSON on stdout"),
        SPILL_ARG('h', "help", SPILL_ARG_HELP, &help, 0, 0, NULL, "this text"),
        SPILL_ARG_END,
    };
    int rc = spill_args_parse(args, argc, argv, 1, usage_head, help_out, err);
    if (rc) return rc;
    if (!!o->model == !!o->config)
        return spill_err_set(err, "give a model with -m MODEL.gguf / -m HF_DIR, or --config config.json (one of them)");
    if (o->dtype && !o->config) return spill_err_set(err, "--dtype is for --config (a model file has its own types)");
    static const char *const dtypes[] = {"bf16", "f16", "f32", "bfloat16", "float16", "float32", NULL};
    int is_dtype = !o->dtype;
    for (int i = 0; dtypes[i] && !is_dtype; i++) is_dtype = !strcasecmp(o->dtype, dtypes[i]);
    if (!is_dtype) return spill_err_set(err, "--dtype '%s': bf16, f16 or f32", o->dtype);
    int is_policy = !strcasecmp(o->policy, "all");
    for (int i = 0; spill_policy_names[i]; i++) is_policy |= !strcasecmp(o->policy, spill_policy_names[i]);
    if (!is_policy) return spill_err_set(err, "--policy '%s' is not one of fault, pin, stream, auto, host, all", o->policy);
    return 0;
}
