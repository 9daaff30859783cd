/* spill-info's command line (cli.h). */
#include "cli.h"
#include "spill_args.h"

static const char usage_head[] =
    "usage: spill-info [--json] [--options] [--backend NAME]\n"
    "\n"
    "Prints the machine's memory topology as spill sees it: host NUMA nodes (capacity, free\n"
    "memory, CPUs, distances), GPUs (memory, nearest host node, GPU memory as a NUMA node on\n"
    "Grace Hopper, link), and which memory backend would be used and why.\n"
    "\n";

int spill_info_cli(spill_info_opts *o, const spill_options *env, int argc, char **argv, FILE *help_out, spill_err *err) {
    *o = (spill_info_opts){.env = *env};
    int help = 0;
    const spill_arg args[] = {
        SPILL_ARG(0, "json", SPILL_ARG_FLAG, &o->json, 0, 0, NULL, "the same as JSON on stdout"),
        SPILL_ARG(0, "options", SPILL_ARG_FLAG, &o->options, 0, 0, NULL,
         "list every SPILL_* environment variable, its default and current value"),
        SPILL_ARG(0, "backend", SPILL_ARG_OPTION, &o->env, 0, 0, "NAME",
         "open this backend instead of SPILL_BACKEND (auto, host, emulated,\nsystem, cuda-managed, cuda-device) and "
         "report whether it works here"),
        SPILL_ARG('h', "help", SPILL_ARG_HELP, &help, 0, 0, NULL, "this text"),
        SPILL_ARG_END,
    };
    return spill_args_parse(args, argc, argv, 1, usage_head, help_out, err);
}
