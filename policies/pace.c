/* Pacing continuous batching to a step time (spill-server --itl-target): a step of n tokens is taken to
 * cost a + b n seconds (a: reading the weights, paid once a step; b: each token's compute), a and b
 * fitted by least squares over the steps seen, each older step weighing PACE_KEEP times the one after
 * it, so the fit follows a context that grows or a machine that slows. Plain data and arithmetic. */
#include <math.h>

#include "spill_policy.h"

#define PACE_KEEP 0.95

void spill_pace_add(spill_pace *p, int tokens, double seconds) {
    if (tokens < 1 || !(seconds >= 0) || !isfinite(seconds)) return;
    double n = tokens;
    p->s0 = PACE_KEEP * p->s0 + 1;
    p->s1 = PACE_KEEP * p->s1 + n;
    p->s2 = PACE_KEEP * p->s2 + n * n;
    p->sy = PACE_KEEP * p->sy + seconds;
    p->sxy = PACE_KEEP * p->sxy + n * seconds;
}

double spill_pace_predict(const spill_pace *p, int tokens) {
    if (p->s1 <= 0) return 0; /* nothing seen */
    double var = p->s0 * p->s2 - p->s1 * p->s1;
    /* the steps' sizes differ enough to tell a from b (steps all of one size leave var at rounding's
       level): the line; else each token taken to cost the mean step's time per token, which
       overstates a larger step's and understates a smaller one's */
    if (var > 1e-9 * p->s0 * p->s2) {
        double b = (p->s0 * p->sxy - p->s1 * p->sy) / var;
        double a = (p->sy - b * p->s1) / p->s0;
        if (b > 0 && a >= 0) return a + b * tokens;
    }
    return p->sy / p->s1 * tokens;
}

int spill_pace_cap(const spill_pace *p, double target_s, int max_tokens) {
    if (max_tokens < 1) max_tokens = 1;
    if (p->s1 <= 0 || !(target_s > 0)) return 1; /* nothing seen yet: one sequence, to learn from */
    /* the predicted time grows with the tokens: the most whose prediction is within the target */
    int lo = 1, hi = max_tokens;
    if (spill_pace_predict(p, hi) <= target_s) return hi;
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        if (spill_pace_predict(p, mid) <= target_s) lo = mid;
        else hi = mid;
    }
    return lo;
}
