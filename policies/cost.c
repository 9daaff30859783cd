/* The cost model: predicted seconds per step from bytes per tier over bandwidth and FLOPs over
 * throughput, with transfers overlapped where the plan overlaps them. Every number it returns is a
 * prediction. Assumptions (docs/policies.md):
 *  - a step runs region by region; a region takes max(its reads / its tier's bandwidth, its FLOPs /
 *    the processor's throughput); a region split between HBM and host memory reads both parts at
 *    once, so it takes the longer of the two. On the CPU the throughput is the profile's measured
 *    multiply-add rate for the region's weight format (1 token, or a batch) where it has one: spill's
 *    CPU matmul is compute-bound at decode, at a rate that differs by format;
 *  - a GEMM re-reads its weights once per 128 tokens (tile width), so a prefill of n tokens reads a
 *    weight ceil(n/128) times; decode at batch b <= 128 reads it once;
 *  - streamed regions are read from HBM; their transfers run on the copy engine beside compute, so
 *    the step takes max(compute, transfers), plus, for a prefill, the first k layers' transfers
 *    before anything can start;
 *  - a profile with no GPU runs HBM plans with host memory standing in for HBM (the emulated
 *    backend): both "tiers" and the copies share one memory bus, so their times add;
 *  - fault (no hints): if everything fits in the budget, it all migrates once and stays; if not, an
 *    LRU driver evicting under a cyclic scan larger than memory misses on every page, so every byte
 *    migrates every step at the fault-driven rate. */
#include <math.h>
#include <string.h>
#include <strings.h>

#include "spill_policy.h"

spill_prediction spill_cost_predict(const spill_region *r, const spill_plan *plan, const spill_profile *prof,
                                    spill_phase ph) {
    spill_prediction out;
    memset(&out, 0, sizeof out);
    spill_proc proc = prof->has_gpu && strcasecmp(plan->chosen, "host") ? SPILL_PROC_GPU : SPILL_PROC_CPU;
    int tok = ph.tokens > 0 ? ph.tokens : 1;
    double passes = ceil(tok / 128.0);
    double flops = prof->flops[proc] > 0 ? prof->flops[proc] : 1e30;
    double exec = 0, xfer = 0, total_bytes = 0;
    int streamed = 0;
    int fault = !strcasecmp(plan->chosen, "fault") && prof->has_gpu;
    double disk = 0; /* seconds of reads from the disk tier; the drive's DMA runs beside compute */
    for (int i = 0; i < plan->n; i++) {
        const spill_region_plan *rp = &plan->region[i];
        if (!r[i].bytes) continue;
        if (ph.skip && r[i].layer >= 0 && ph.skip[r[i].layer]) continue; /* a draft step leaves the layer out */
        /* a draft with a reduced vocabulary reads that share of the head's rows (on the CPU; the GPU's
           head computes every row, runtime/engine.h): "output", or a tied embedding read whole */
        int head = r[i].layer < 0 && r[i].kind == SPILL_REGION_WEIGHT && r[i].name &&
                   (!strcmp(r[i].name, "output") || (!strcmp(r[i].name, "token_embd") && r[i].reads_per_step >= 1));
        double share = proc == SPILL_PROC_CPU && head && ph.head_share > 0 && ph.head_share < 1 ? ph.head_share : 1;
        double reads;
        if (r[i].kind == SPILL_REGION_WEIGHT) reads = r[i].reads_per_step < 1 ? r[i].reads_per_step * tok : passes * r[i].reads_per_step;
        else reads = r[i].reads_per_step;
        reads *= share;
        /* the part in HBM and the part in host memory are read at the same time. A draft step on
           the CPU (no GPU) reads a streamed layer where it lives, with no copy (runtime/place.c) */
        int copied = rp->streamed && !(ph.skip && !prof->has_gpu);
        double in_hbm = copied || fault ? (double)r[i].bytes : (double)rp->hbm_bytes;
        double in_host = (double)r[i].bytes - in_hbm;
        double bh = prof->read_bw[SPILL_TIER_HBM][proc] > 0 ? prof->read_bw[SPILL_TIER_HBM][proc] : 1e-30;
        double bc = prof->read_bw[SPILL_TIER_HOST][proc] > 0 ? prof->read_bw[SPILL_TIER_HOST][proc] : 1e-30;
        /* two memory systems read at once on a GPU; with no GPU, "HBM" is the same host memory
           standing in for it, so the two parts take turns on one memory bus */
        double mem = prof->has_gpu ? fmax(in_hbm * reads / bh, in_host * reads / bc) : in_hbm * reads / bh + in_host * reads / bc;
        /* the CPU at its measured rate for the region's format where the profile has one (its matmul
           is compute-bound at decode, well below the memory's rate), else at its dense flops */
        double rate = proc == SPILL_PROC_CPU ? spill_profile_cpu_rate(prof, r[i].format, tok) : 0;
        double compute = (rate > 0 ? (double)r[i].params * tok / rate : 2.0 * (double)r[i].params * tok / flops) * share;
        exec += fmax(mem, compute);
        out.read[SPILL_TIER_HBM] += in_hbm * reads;
        out.read[SPILL_TIER_HOST] += in_host * reads;
        total_bytes += (double)r[i].bytes;
        if (rp->on_disk) disk += (double)r[i].bytes * reads / (prof->disk_bw > 0 ? prof->disk_bw : 1e-30);
        if (copied) {
            double link = prof->link_h2d > 0 ? prof->link_h2d : prof->read_bw[SPILL_TIER_HOST][proc];
            xfer += (double)r[i].bytes / link;
            out.moved += (double)r[i].bytes;
            streamed++;
        }
    }
    /* a copy engine moves streamed layers beside compute; without a GPU the copies are the CPU's
       own memcpy on the same memory bus, so they add */
    double step = prof->has_gpu ? fmax(exec, xfer) : exec + xfer;
    step = fmax(step, disk);
    if (ph.prefill && streamed && plan->ring_ahead > 0) step += xfer * plan->ring_ahead / streamed;
    if (fault) {
        double budget = (double)prof->capacity[SPILL_TIER_HBM];
        if (plan->bytes[SPILL_TIER_HBM] > 0) budget = (double)plan->bytes[SPILL_TIER_HBM];
        if (total_bytes > budget) {
            double fb = prof->fault_bw > 0 ? prof->fault_bw : 1e-30;
            step += total_bytes / fb;
            out.moved = total_bytes;
        }
    }
    out.step_s = step;
    out.tok_s = step > 0 ? tok / step : 0;
    return out;
}

double spill_cost_spec_tok_s(const spill_region *r, const spill_plan *plan, const spill_profile *prof, const uint8_t *skip,
                             double head_share, int k, double tau) {
    spill_phase draft = {0, 1, skip, head_share}, verify = {0, k + 1, NULL, 1};
    double td = spill_cost_predict(r, plan, prof, draft).step_s, tv = spill_cost_predict(r, plan, prof, verify).step_s;
    double round = k * td + tv;
    return round > 0 ? tau / round : 0;
}
