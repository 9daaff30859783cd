#include "spill_common.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <time.h>

int spill_err_set(spill_err *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int spill_parse_size(const char *s, uint64_t *out) {
    if (!s || !*s || *s == '-') return -1;
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    /* !(v >= 0) also turns away NaN ("nan", "nanK"), whose conversion to an integer is undefined */
    if (errno || end == s || !(v >= 0) || !isfinite(v)) return -1;
    uint64_t mul = 1;
    if (*end) {
        switch (toupper((unsigned char)*end)) {
        case 'K': mul = 1ull << 10; break;
        case 'M': mul = 1ull << 20; break;
        case 'G': mul = 1ull << 30; break;
        case 'T': mul = 1ull << 40; break;
        default: return -1;
        }
        end++;
        if (toupper((unsigned char)*end) == 'B' || toupper((unsigned char)*end) == 'I') end++;
        if (*end == 'B') end++;
        if (*end) return -1;
    }
    double bytes = v * (double)mul;
    if (!(bytes < 18446744073709551615.0)) return -1;
    *out = (uint64_t)bytes;
    return 0;
}

double spill_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
