/* spill's JSON reader (common/json.c) beside jansson and cJSON: speed and memory on tokenizer.json-
 * sized files, a table of hostile inputs (each parse in a child process, so that a crash, a stack
 * overflow or a hang is recorded rather than fatal), and a randomized differential check (which inputs
 * does each library accept?). docs/json.md has the results and what was decided from them.
 *
 *   json_bench speed [--reps N] [--lib spill|jansson|cjson] FILE...
 *                                         parse time (median of N; CPU and wall), heap peak, counts
 *   json_bench hostile                    the hostile-input table
 *   json_bench diff [--n N] [--seed S]    N mutations of small valid documents
 *   json_bench one FILE                   one document: each library's verdict
 *
 * Output is markdown. Built only when pkg-config finds jansson and cJSON (see CMakeLists.txt).
 *
 * The libraries are configured as a network-facing server would use them:
 *   jansson: json_loadb(JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL): any value at the
 *            top level, duplicate keys refused, \u0000 kept in strings (what spill does);
 *   cJSON:   cJSON_ParseWithLengthOpts(buf, len + 1, &end, 1) on a NUL-terminated copy: text after
 *            the value refused (cJSON_Parse alone accepts it).
 *
 * Heap bytes are counted by wrapping malloc/calloc/realloc/free (glibc's __libc_* underneath; the
 * usable size of each block), the same way for all three. */
#include "spill_json.h"

#include <cjson/cJSON.h>
#include <jansson.h>
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---------- counting allocator ---------- */
static long long g_live, g_peak;
static int g_count;
#ifndef JSON_BENCH_SANITIZE
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
static inline void heap_acct(long long d) {
    g_live += d;
    if (g_live > g_peak) g_peak = g_live;
}
/* (malloc_usable_size only while counting, so that the timed parses pay nothing for it) */
void *malloc(size_t n) {
    void *p = __libc_malloc(n);
    if (g_count && p) heap_acct((long long)malloc_usable_size(p));
    return p;
}
void *calloc(size_t a, size_t b) {
    void *p = __libc_calloc(a, b);
    if (g_count && p) heap_acct((long long)malloc_usable_size(p));
    return p;
}
void *realloc(void *o, size_t n) {
    if (!g_count) return __libc_realloc(o, n);
    long long old = o ? (long long)malloc_usable_size(o) : 0;
    void *p = __libc_realloc(o, n);
    if (p)
        heap_acct((long long)malloc_usable_size(p) - old);
    else if (o && !n)
        heap_acct(-old);
    return p;
}
void free(void *p) {
    if (!p) return;
    if (g_count) heap_acct(-(long long)malloc_usable_size(p));
    __libc_free(p);
}
#define HAVE_COUNT 1
#else
#define HAVE_COUNT 0
#endif
static void count_start(void) {
    g_live = g_peak = 0;
    g_count = 1;
}
static long long count_stop(void) {
    g_count = 0;
    return g_peak;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
/* CPU time of this process (user + system): steadier than wall time on a machine shared with builds */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---------- the three libraries behind one interface ---------- */
#define JANSSON_FLAGS (JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)

typedef struct result {
    int ok;
    size_t at;     /* where the error is, when refused */
    char msg[200]; /* the library's words, when refused */
} result;

enum { L_SPILL, L_JANSSON, L_CJSON, NLIB };
static const char *const lib_name[NLIB] = {"spill_json", "jansson 2.14", "cJSON 1.7.15"};

/* buf must have a NUL at buf[len] (cJSON wants one) */
static void *lib_parse(int lib, const char *buf, size_t len, result *r) {
    memset(r, 0, sizeof *r);
    if (lib == L_SPILL) {
        spill_json *j = NULL;
        spill_err err = {{0}};
        if (!spill_json_parse(buf, len, "in", &j, &err)) {
            r->ok = 1;
            return j;
        }
        const char *b = strstr(err.msg, "at byte ");
        const char *m = strstr(err.msg, "): ");
        if (b) r->at = (size_t)strtoull(b + 8, NULL, 10);
        snprintf(r->msg, sizeof r->msg, "%.190s", m ? m + 3 : err.msg);
        return NULL;
    }
    if (lib == L_JANSSON) {
        json_error_t e;
        json_t *j = json_loadb(buf, len, JANSSON_FLAGS, &e);
        if (j) {
            r->ok = 1;
            return j;
        }
        r->at = (size_t)e.position;
        snprintf(r->msg, sizeof r->msg, "%s", e.text);
        return NULL;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(buf, len + 1, &end, 1);
    if (j) {
        r->ok = 1;
        return j;
    }
    r->at = end ? (size_t)(end - buf) : 0;
    snprintf(r->msg, sizeof r->msg, "(no message)");
    return NULL;
}

static void lib_free(int lib, void *t) {
    if (!t) return;
    if (lib == L_SPILL)
        spill_json_free(t);
    else if (lib == L_JANSSON)
        json_decref(t);
    else
        cJSON_Delete(t);
}

/* ---------- walking a tree: counts, a checksum, a canonical form ---------- */
typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;
static void sb_put(sbuf *b, const void *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_printf(sbuf *b, const char *fmt, ...) SPILL_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

typedef struct walk {
    size_t nodes, str_bytes;
    uint64_t sum; /* order-independent: the sum of a hash of every string and number */
} walk;
static uint64_t h64(const void *s, size_t n, uint64_t salt) {
    uint64_t h = 1469598103934665603ull ^ salt;
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)s)[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}
static void walk_str(walk *w, const char *s, size_t n, int key) {
    w->str_bytes += n;
    w->sum += h64(s, n, (uint64_t)key);
}
static void walk_num(walk *w, double d) { w->sum += h64(&d, sizeof d, 7); }

/* the canonical form: one line per value, keys sorted, numbers as %.17g of a double */
typedef struct kv {
    const char *k;
    size_t kl;
    const void *v;
} kv;
static int kv_cmp(const void *a, const void *b) {
    const kv *x = a, *y = b;
    size_t m = x->kl < y->kl ? x->kl : y->kl;
    int c = memcmp(x->k, y->k, m);
    return c ? c : (x->kl > y->kl) - (x->kl < y->kl);
}
static void canon_str(sbuf *b, const char *s, size_t n) {
    sb_printf(b, "\"%zu:", n);
    sb_put(b, s, n);
    sb_put(b, "\"", 1);
}
static int g_unsigned_zero; /* compare -0 as 0 */
static void canon_num(sbuf *b, double d) { sb_printf(b, "%.17g", g_unsigned_zero && d == 0 ? 0.0 : d); }

static void walk_spill(const spill_json *j, walk *w, sbuf *cb) {
    w->nodes++;
    switch (j->type) {
    case SPILL_JSON_NULL:
        if (cb) sb_put(cb, "n", 1);
        break;
    case SPILL_JSON_BOOL:
        if (cb) sb_put(cb, j->boolean ? "t" : "f", 1);
        break;
    case SPILL_JSON_NUMBER:
        walk_num(w, j->number);
        if (cb) canon_num(cb, j->number);
        break;
    case SPILL_JSON_STRING:
        walk_str(w, j->str, j->len, 0);
        if (cb) canon_str(cb, j->str, j->len);
        break;
    case SPILL_JSON_ARRAY:
        if (cb) sb_put(cb, "[", 1);
        for (size_t k = 0; k < j->n; k++) {
            if (cb && k) sb_put(cb, ",", 1);
            walk_spill(&j->items[k], w, cb);
        }
        if (cb) sb_put(cb, "]", 1);
        break;
    case SPILL_JSON_OBJECT: {
        kv *s = cb ? malloc((j->n + 1) * sizeof *s) : NULL;
        for (size_t k = 0; k < j->n; k++) {
            walk_str(w, j->keys[k], strlen(j->keys[k]), 1);
            if (s) s[k] = (kv){j->keys[k], strlen(j->keys[k]), &j->items[k]};
            if (!cb) walk_spill(&j->items[k], w, NULL);
        }
        if (s) {
            qsort(s, j->n, sizeof *s, kv_cmp);
            sb_put(cb, "{", 1);
            for (size_t k = 0; k < j->n; k++) {
                if (k) sb_put(cb, ",", 1);
                canon_str(cb, s[k].k, s[k].kl);
                sb_put(cb, ":", 1);
                walk_spill(s[k].v, w, cb);
            }
            sb_put(cb, "}", 1);
            free(s);
        }
        break;
    }
    }
}

static void walk_jansson(const json_t *j, walk *w, sbuf *cb) {
    w->nodes++;
    switch (json_typeof(j)) {
    case JSON_NULL:
        if (cb) sb_put(cb, "n", 1);
        break;
    case JSON_TRUE:
        if (cb) sb_put(cb, "t", 1);
        break;
    case JSON_FALSE:
        if (cb) sb_put(cb, "f", 1);
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        walk_num(w, json_number_value(j));
        if (cb) canon_num(cb, json_number_value(j));
        break;
    case JSON_STRING:
        walk_str(w, json_string_value(j), json_string_length(j), 0);
        if (cb) canon_str(cb, json_string_value(j), json_string_length(j));
        break;
    case JSON_ARRAY:
        if (cb) sb_put(cb, "[", 1);
        for (size_t k = 0; k < json_array_size(j); k++) {
            if (cb && k) sb_put(cb, ",", 1);
            walk_jansson(json_array_get(j, k), w, cb);
        }
        if (cb) sb_put(cb, "]", 1);
        break;
    case JSON_OBJECT: {
        size_t n = json_object_size(j), k = 0;
        kv *s = cb ? malloc((n + 1) * sizeof *s) : NULL;
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)j, key, v) {
            walk_str(w, key, strlen(key), 1);
            if (s)
                s[k++] = (kv){key, strlen(key), v};
            else
                walk_jansson(v, w, NULL);
        }
        if (s) {
            qsort(s, k, sizeof *s, kv_cmp);
            sb_put(cb, "{", 1);
            for (size_t i = 0; i < k; i++) {
                if (i) sb_put(cb, ",", 1);
                canon_str(cb, s[i].k, s[i].kl);
                sb_put(cb, ":", 1);
                walk_jansson(s[i].v, w, cb);
            }
            sb_put(cb, "}", 1);
            free(s);
        }
        break;
    }
    }
}

static void walk_cjson(const cJSON *j, walk *w, sbuf *cb) {
    w->nodes++;
    if (cJSON_IsNull(j)) {
        if (cb) sb_put(cb, "n", 1);
    } else if (cJSON_IsTrue(j)) {
        if (cb) sb_put(cb, "t", 1);
    } else if (cJSON_IsFalse(j)) {
        if (cb) sb_put(cb, "f", 1);
    } else if (cJSON_IsNumber(j)) {
        walk_num(w, j->valuedouble);
        if (cb) canon_num(cb, j->valuedouble);
    } else if (cJSON_IsString(j)) {
        walk_str(w, j->valuestring, strlen(j->valuestring), 0);
        if (cb) canon_str(cb, j->valuestring, strlen(j->valuestring));
    } else if (cJSON_IsArray(j)) {
        if (cb) sb_put(cb, "[", 1);
        int k = 0;
        for (const cJSON *c = j->child; c; c = c->next, k++) {
            if (cb && k) sb_put(cb, ",", 1);
            walk_cjson(c, w, cb);
        }
        if (cb) sb_put(cb, "]", 1);
    } else if (cJSON_IsObject(j)) {
        size_t n = (size_t)cJSON_GetArraySize(j), k = 0;
        kv *s = cb ? malloc((n + 1) * sizeof *s) : NULL;
        for (const cJSON *c = j->child; c; c = c->next) {
            walk_str(w, c->string, strlen(c->string), 1);
            if (s)
                s[k++] = (kv){c->string, strlen(c->string), c};
            else
                walk_cjson(c, w, NULL);
        }
        if (s) {
            qsort(s, k, sizeof *s, kv_cmp);
            sb_put(cb, "{", 1);
            for (size_t i = 0; i < k; i++) {
                if (i) sb_put(cb, ",", 1);
                canon_str(cb, s[i].k, s[i].kl);
                sb_put(cb, ":", 1);
                walk_cjson(s[i].v, w, cb);
            }
            sb_put(cb, "}", 1);
            free(s);
        }
    }
}

static void lib_walk(int lib, const void *t, walk *w, sbuf *cb) {
    memset(w, 0, sizeof *w);
    if (lib == L_SPILL)
        walk_spill(t, w, cb);
    else if (lib == L_JANSSON)
        walk_jansson(t, w, cb);
    else
        walk_cjson(t, w, cb);
}

/* the tokenizer's counts: model.vocab keys, model.merges items, added_tokens items (-1: absent) */
static void tok_counts(int lib, const void *t, long counts[3]) {
    counts[0] = counts[1] = counts[2] = -1;
    if (lib == L_SPILL) {
        const spill_json *m = spill_json_get_type(t, "model", SPILL_JSON_OBJECT), *x;
        if ((x = spill_json_get_type(m, "vocab", SPILL_JSON_OBJECT))) counts[0] = (long)x->n;
        if ((x = spill_json_get_type(m, "merges", SPILL_JSON_ARRAY))) counts[1] = (long)x->n;
        if ((x = spill_json_get_type(t, "added_tokens", SPILL_JSON_ARRAY))) counts[2] = (long)x->n;
    } else if (lib == L_JANSSON) {
        json_t *m = json_object_get(t, "model"), *x;
        if ((x = json_object_get(m, "vocab")) && json_is_object(x)) counts[0] = (long)json_object_size(x);
        if ((x = json_object_get(m, "merges")) && json_is_array(x)) counts[1] = (long)json_array_size(x);
        if ((x = json_object_get(t, "added_tokens")) && json_is_array(x)) counts[2] = (long)json_array_size(x);
    } else {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(t, "model"), *x;
        if ((x = cJSON_GetObjectItemCaseSensitive(m, "vocab")) && cJSON_IsObject(x)) counts[0] = cJSON_GetArraySize(x);
        if ((x = cJSON_GetObjectItemCaseSensitive(m, "merges")) && cJSON_IsArray(x)) counts[1] = cJSON_GetArraySize(x);
        if ((x = cJSON_GetObjectItemCaseSensitive(t, "added_tokens")) && cJSON_IsArray(x))
            counts[2] = cJSON_GetArraySize(x);
    }
}

/* ---------- running something in a child process ---------- */
/* Runs fn(arg, out) in a child with a time limit and an address-space limit; out (size n) comes back
   through a pipe. Returns 0, else the signal that ended the child (SIGALRM: the time limit). */
static int in_child(void (*fn)(void *arg, void *out), void *arg, void *out, size_t n, int limit_s) {
    int fd[2];
    if (pipe(fd)) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (!pid) {
        close(fd[0]);
#ifndef JSON_BENCH_SANITIZE /* (the sanitizers reserve terabytes of address space) */
        struct rlimit rl = {(rlim_t)6 << 30, (rlim_t)6 << 30};
        setrlimit(RLIMIT_AS, &rl);
#endif
        alarm((unsigned)limit_s);
        char *o = calloc(1, n);
        fn(arg, o);
        for (size_t w = 0; w < n;) {
            ssize_t k = write(fd[1], o + w, n - w);
            if (k <= 0) _exit(3);
            w += (size_t)k;
        }
        _exit(0);
    }
    close(fd[1]);
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd[0], (char *)out + got, n - got);
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st)) return WTERMSIG(st);
    if (got < n || WEXITSTATUS(st)) return -2;
    return 0;
}

static const char *sig_name(int s) {
    switch (s) {
    case SIGSEGV: return "CRASH: SIGSEGV (stack overflow?)";
    case SIGABRT: return "CRASH: SIGABRT";
    case SIGBUS: return "CRASH: SIGBUS";
    case SIGALRM: return "TIMEOUT";
    case SIGKILL: return "KILLED (memory?)";
    default: return "CRASH";
    }
}

/* ---------- speed ---------- */
typedef struct speed_arg {
    int lib, reps;
    const char *buf;
    size_t len;
} speed_arg;
typedef struct speed_out {
    double med, min, first, free_med, cpu_med, cpu_min;
    long long heap_peak, rss_delta_kb;
    long counts[3];
    walk w;
    int ok;
    char msg[200];
} speed_out;

static int dcmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void speed_child(void *argp, void *outp) {
    speed_arg *a = argp;
    speed_out *o = outp;
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double *t = calloc((size_t)a->reps, sizeof *t), *tf = calloc((size_t)a->reps, sizeof *tf);
    double *tc = calloc((size_t)a->reps, sizeof *tc);
    for (int r = 0; r < a->reps; r++) {
        result res;
        if (r == 0) count_start();
        double c0 = cpu_s(), t0 = now_s();
        void *tree = lib_parse(a->lib, a->buf, a->len, &res);
        double t1 = now_s();
        tc[r] = cpu_s() - c0;
        if (r == 0) o->heap_peak = count_stop();
        if (!tree) {
            snprintf(o->msg, sizeof o->msg, "byte %zu: %.160s", res.at, res.msg);
            return;
        }
        if (r == 0) {
            o->first = t1 - t0;
            getrusage(RUSAGE_SELF, &ru1);
            o->rss_delta_kb = ru1.ru_maxrss - ru0.ru_maxrss;
            tok_counts(a->lib, tree, o->counts);
            lib_walk(a->lib, tree, &o->w, NULL);
        }
        double t2 = now_s();
        lib_free(a->lib, tree);
        tf[r] = now_s() - t2;
        t[r] = t1 - t0;
    }
    o->ok = 1;
    qsort(t, (size_t)a->reps, sizeof *t, dcmp);
    qsort(tf, (size_t)a->reps, sizeof *tf, dcmp);
    qsort(tc, (size_t)a->reps, sizeof *tc, dcmp);
    o->cpu_med = tc[a->reps / 2];
    o->cpu_min = tc[0];
    o->med = t[a->reps / 2];
    o->min = t[0];
    o->free_med = tf[a->reps / 2];
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(b);
        return NULL;
    }
    fclose(f);
    b[n] = 0;
    *len = (size_t)n;
    return b;
}

static int cmd_speed(int argc, char **argv) {
    int reps = 7, only = -1;
    printf(
        "| file | library | parse CPU ms, median | CPU min | wall median | wall first | MB/s (CPU median) | free ms | "
        "heap peak MB | maxrss delta MB | vocab | merges | added | nodes | string bytes | checksum |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
            if (reps < 1) reps = 1;
            continue;
        }
        if (!strcmp(argv[i], "--lib") && i + 1 < argc) { /* spill, jansson or cjson: that one alone */
            i++;
            only = argv[i][0] == 's' ? L_SPILL : argv[i][0] == 'j' ? L_JANSSON : L_CJSON;
            continue;
        }
        size_t len;
        char *buf = read_file(argv[i], &len);
        if (!buf) {
            fprintf(stderr, "json_bench: cannot read %s\n", argv[i]);
            return 1;
        }
        const char *base = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
        for (int lib = 0; lib < NLIB; lib++) {
            if (only >= 0 && lib != only) continue;
            speed_arg a = {lib, reps, buf, len};
            speed_out o;
            memset(&o, 0, sizeof o);
            int sig = in_child(speed_child, &a, &o, sizeof o, 600);
            if (sig) {
                printf("| %s (%.1f MB) | %s | %s |\n", base, len / 1e6, lib_name[lib], sig > 0 ? sig_name(sig) : "?");
                continue;
            }
            if (!o.ok) {
                printf("| %s (%.1f MB) | %s | refused: %s |\n", base, len / 1e6, lib_name[lib], o.msg);
                continue;
            }
            char heap[32] = "-";
            if (HAVE_COUNT) snprintf(heap, sizeof heap, "%.1f", o.heap_peak / 1048576.0);
            printf("| %s (%.1f MB) | %s | %.1f | %.1f | %.1f | %.1f | %.0f | %.1f | %s | %.1f | %ld | %ld | %ld | %zu "
                   "| %zu | "
                   "%016llx |\n",
                   base, len / 1e6, lib_name[lib], o.cpu_med * 1e3, o.cpu_min * 1e3, o.med * 1e3, o.first * 1e3,
                   len / 1e6 / o.cpu_med, o.free_med * 1e3, heap, o.rss_delta_kb / 1024.0, o.counts[0], o.counts[1],
                   o.counts[2], o.w.nodes, o.w.str_bytes, (unsigned long long)o.w.sum);
            fflush(stdout);
        }
        free(buf);
    }
    return 0;
}

/* ---------- hostile inputs ---------- */
typedef struct doc {
    char *p;
    size_t n;
} doc;
static doc doc_new(size_t cap) {
    doc d = {malloc(cap + 1), 0};
    d.p[0] = 0;
    return d;
}
static void put(doc *d, const char *s, size_t n) {
    memcpy(d->p + d->n, s, n);
    d->n += n;
    d->p[d->n] = 0;
}
static doc lit_doc(const char *s, size_t n) {
    doc d = doc_new(n);
    put(&d, s, n);
    return d;
}
#define LIT(s) lit_doc(s, sizeof(s) - 1)
static doc repeat3(const char *a, const char *mid, const char *b, size_t times) {
    size_t la = strlen(a), lm = strlen(mid), lb = strlen(b);
    doc d = doc_new((la + lb) * times + lm);
    for (size_t i = 0; i < times; i++) put(&d, a, la);
    put(&d, mid, lm);
    for (size_t i = 0; i < times; i++) put(&d, b, lb);
    return d;
}

/* pre, then unit `times` times with sep between, then post */
static doc wrap(const char *pre, const char *unit, const char *sep, size_t times, const char *post) {
    size_t lp = strlen(pre), lu = strlen(unit), ls = strlen(sep), lq = strlen(post);
    doc d = doc_new(lp + (lu + ls) * times + lq);
    put(&d, pre, lp);
    for (size_t i = 0; i < times; i++) {
        if (i) put(&d, sep, ls);
        put(&d, unit, lu);
    }
    put(&d, post, lq);
    return d;
}

/* spill's duplicate-key hash before this branch: 64-bit FNV-1a, unseeded. Its low k bits depend only
   on the low k bits of the state, so two 3-byte blocks that collide mod 2^20 from one state can be
   found by a birthday search, stage after stage: 2^stages keys, all in one bucket of any table of up
   to 2^20 slots. */
static doc fnv_flood(int stages) {
    const char al[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const uint64_t P = 1099511628211ull, MASK = (1u << 20) - 1;
    uint32_t *seen = malloc((MASK + 1) * sizeof *seen);
    char blk[32][2][4];
    uint64_t s = 1469598103934665603ull;
    for (int st = 0; st < stages; st++) {
        memset(seen, 0, (MASK + 1) * sizeof *seen);
        for (uint32_t b = 0;; b++) {
            char c[3] = {al[b % 62], al[b / 62 % 62], al[b / 3844 % 62]};
            uint64_t h = s;
            for (int k = 0; k < 3; k++) h = (h ^ (unsigned char)c[k]) * P;
            uint32_t slot = (uint32_t)(h & MASK);
            if (seen[slot]) {
                uint32_t o = seen[slot] - 1;
                char oc[3] = {al[o % 62], al[o / 62 % 62], al[o / 3844 % 62]};
                memcpy(blk[st][0], oc, 3);
                memcpy(blk[st][1], c, 3);
                blk[st][0][3] = blk[st][1][3] = 0;
                s = h;
                break;
            }
            seen[slot] = b + 1;
        }
    }
    free(seen);
    size_t nk = (size_t)1 << stages;
    doc d = doc_new(nk * (size_t)(3 * stages + 16) + 16);
    put(&d, "{", 1);
    for (size_t i = 0; i < nk; i++) {
        put(&d, i ? ",\"" : "\"", i ? 2 : 1);
        for (int st = 0; st < stages; st++) put(&d, blk[st][(i >> st) & 1], 3);
        put(&d, "\":0", 3);
    }
    put(&d, "}", 1);
    return d;
}
static doc random_keys(int stages) {
    size_t nk = (size_t)1 << stages;
    doc d = doc_new(nk * (size_t)(3 * stages + 16) + 16);
    uint64_t x = 88172645463325252ull;
    put(&d, "{", 1);
    for (size_t i = 0; i < nk; i++) {
        put(&d, i ? ",\"" : "\"", i ? 2 : 1);
        char k[128];
        for (int c = 0; c < 3 * stages; c++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            k[c] = (char)('a' + x % 26);
        }
        put(&d, k, (size_t)(3 * stages));
        put(&d, "\":0", 3);
    }
    put(&d, "}", 1);
    return d;
}

static const char small_doc[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 4096, \"rope_scaling\": {\"factor\": 8.0, "
    "\"rope_type\": \"llama3\"}, \"eos_token_id\": [128001, 128009], \"name\": \"caf\\u00e9 \\ud83d\\ude00\", "
    "\"tie\": false, \"x\": null}";

typedef struct hcase {
    const char *name;
    doc (*make)(void);
    int every_prefix; /* parse every proper prefix instead of the document */
} hcase;

#define GEN(fn, expr)                                                                                                  \
    static doc fn(void) { return expr; }
GEN(g_arr3, repeat3("[", "", "]", 1000))
GEN(g_arr5, repeat3("[", "", "]", 100000))
GEN(g_arr7, repeat3("[", "", "]", 10000000))
GEN(g_obj3, repeat3("{\"a\":", "1", "}", 1000))
GEN(g_obj5, repeat3("{\"a\":", "1", "}", 100000))
GEN(g_obj7, repeat3("{\"a\":", "1", "}", 10000000))
GEN(g_open7, repeat3("[", "", "", 10000000))
static doc g_bigstr(void) {
    size_t n = 100u << 20;
    doc d = doc_new(n + 4);
    put(&d, "[\"", 2);
    memset(d.p + d.n, 'a', n);
    d.n += n;
    put(&d, "\"]", 2);
    return d;
}
GEN(g_escstr_close, wrap("[\"", "\\ud83d\\ude00", "", 1000000, "\"]"))
GEN(g_zeros, wrap("[", "0", ",", 5000000, "]"))
GEN(g_emptyarrs, wrap("[", "[]", ",", 2500000, "]"))
GEN(g_onearrs, wrap("[", "[0]", ",", 2500000, "]"))
GEN(g_pairs, wrap("[", "[\"a\",\"b\"]", ",", 1000000, "]"))
GEN(g_smallobjs, wrap("[", "{\"a\":0}", ",", 1250000, "]"))
static doc g_longnum6(void) {
    doc d = repeat3("", "", "1", 1000000);
    doc e = doc_new(d.n + 2);
    put(&e, "[", 1);
    put(&e, d.p, d.n);
    put(&e, "]", 1);
    free(d.p);
    return e;
}
static doc g_longfrac6(void) {
    doc d = repeat3("", "", "0", 1000000);
    doc e = doc_new(d.n + 8);
    put(&e, "[0.", 3);
    put(&e, d.p, d.n);
    put(&e, "1]", 2);
    free(d.p);
    return e;
}
static doc g_dup_late(void) {
    doc d = random_keys(17);
    d.n--; /* drop '}' */
    doc e = doc_new(d.n + 64);
    put(&e, d.p, d.n);
    /* the first key again */
    const char *q = strchr(d.p + 2, '"');
    put(&e, ",", 1);
    put(&e, d.p + 1, (size_t)(q - d.p));
    put(&e, ":1}", 3);
    free(d.p);
    return e;
}
GEN(g_flood14, fnv_flood(14))
GEN(g_rand14, random_keys(14))
GEN(g_flood16, fnv_flood(16))
GEN(g_rand16, random_keys(16))
GEN(g_small, LIT(small_doc))

#define L(name, s)                                                                                                     \
    static doc name(void) { return LIT(s); }
L(u_overlong2, "[\"\xc0\xaf\"]")
L(u_overlong3, "[\"\xe0\x80\xaf\"]")
L(u_overlongnul, "[\"\xc0\x80\"]")
L(u_surr, "[\"\xed\xa0\x80\"]")
L(u_big, "[\"\xf4\x90\x80\x80\"]")
L(u_trunc, "[\"\xe2\x82\"]")
L(u_cont, "[\"\x80\"]")
L(u_ff, "[\"\xff\"]")
L(u_key, "{\"\xc3\":1}")
L(u_trunc_end, "[\"\xf0\x9f\x98")
L(n_val, "[\"a\\u0000b\"]")
L(n_key, "{\"a\\u0000b\":1}")
L(n_keys2, "{\"a\\u0000b\":1,\"a\\u0000c\":2}")
L(n_raw, "[\"a\0b\"]")
L(n_after, "[1]\0")
L(n_after2, "[1]\0[2]")
L(n_afternum, "[1\0]")
L(n_aftertrue, "[true\0]")
L(d_simple, "{\"a\":1,\"a\":2}")
L(d_nested, "{\"x\":{\"a\":1,\"b\":2,\"a\":3}}")
L(d_esc, "{\"a\":1,\"\\u0061\":2}")
L(num_inf, "[1e999]")
L(num_ninf, "[-1e999]")
L(num_under, "[1e-999]")
L(num_negz, "[-0]")
L(num_negz2, "[-0.0]")
L(num_big, "[123456789012345678901234567890]")
L(num_i64max, "[9223372036854775807]")
L(num_i64over, "[9223372036854775808]")
L(num_i64under, "[-9223372036854775809]")
L(num_2p53, "[9007199254740993]")
L(num_min, "[4.9e-324]")
L(num_lead0, "[01]")
L(num_dot, "[1.]")
L(num_dotfirst, "[.5]")
L(num_plus, "[+1]")
L(num_hex, "[0x10]")
L(num_nan, "[NaN]")
L(num_infw, "[Infinity]")
L(num_minus, "[-]")
L(num_e, "[1e]")
L(t_garbage, "[1] x")
L(t_bracket, "[1]]")
L(t_two, "{}{}")
L(t_scalars, "1 2")
L(t_comma, "[1],")
L(b_bom, "\xEF\xBB\xBF[1]")
L(b_bom_only, "\xEF\xBB\xBF")
L(b_bom2, "\xEF\xBB\xBF\xEF\xBB\xBF[1]")
L(b_utf16, "\xFF\xFE[\0001\0]\0")
L(b_bom_short, "\xEF\xBB\xBF"
               "1")
L(c_tab, "[\"a\tb\"]")
L(c_nl, "[\"a\nb\"]")
L(c_01, "[\"a\x01"
        "b\"]")
L(c_1f, "[\"a\x1f"
        "b\"]")
L(c_del, "[\"a\x7f"
         "b\"]")
L(c_vt_ws, "[1,\v2]")
L(c_ff_ws, "\f[1]")
L(s_hi, "[\"\\ud800\"]")
L(s_lo, "[\"\\udc00\"]")
L(s_hi_a, "[\"\\ud800\\u0041\"]")
L(s_hi_hi, "[\"\\ud800\\ud800\"]")
L(s_hi_end, "[\"a\\ud800\"]")
L(s_max, "[\"\\udbff\\udfff\"]")
L(e_x, "[\"\\x41\"]")
L(e_zz, "[\"\\u12zz\"]")
L(e_short, "[\"\\u12\"]")
L(e_quote, "[\"\\'\"]")
L(r_tcomma, "[1,]")
L(r_tcomma_o, "{\"a\":1,}")
L(r_comment, "[1 /* c */]")
L(r_squote, "['a']")
L(r_unq, "{a:1}")
L(r_empty, "")
L(r_ws, " \n")
L(r_scalar, "\"x\"")
L(r_true_tr, "[tru]")

static const hcase hcases[] = {
    {"nested arrays, 1e3 levels", g_arr3, 0},
    {"nested arrays, 1e5 levels", g_arr5, 0},
    {"nested arrays, 1e7 levels (20 MB)", g_arr7, 0},
    {"nested objects, 1e3 levels", g_obj3, 0},
    {"nested objects, 1e5 levels", g_obj5, 0},
    {"nested objects, 1e7 levels (60 MB)", g_obj7, 0},
    {"1e7 '[' never closed", g_open7, 0},
    {"a 100 MB string", g_bigstr, 0},
    {"a string of 1e6 \\ud83d\\ude00 pairs (12 MB)", g_escstr_close, 0},
    {"[0,0,...]: 5e6 numbers (10 MB)", g_zeros, 0},
    {"[[],[],...]: 2.5e6 empty arrays (7.5 MB)", g_emptyarrs, 0},
    {"[[0],[0],...]: 2.5e6 one-item arrays (10 MB)", g_onearrs, 0},
    {"[[\"a\",\"b\"],...]: 1e6 pairs (10 MB)", g_pairs, 0},
    {"[{\"a\":0},...]: 1.25e6 one-key objects (10 MB)", g_smallobjs, 0},
    {"a number of 1e6 digits", g_longnum6, 0},
    {"0.000...1 with 1e6 digits", g_longfrac6, 0},
    {"UTF-8 overlong '/' C0 AF", u_overlong2, 0},
    {"UTF-8 overlong E0 80 AF", u_overlong3, 0},
    {"UTF-8 overlong NUL C0 80", u_overlongnul, 0},
    {"UTF-8 surrogate ED A0 80", u_surr, 0},
    {"UTF-8 past U+10FFFF F4 90 80 80", u_big, 0},
    {"UTF-8 truncated E2 82", u_trunc, 0},
    {"UTF-8 lone continuation 80", u_cont, 0},
    {"UTF-8 byte FF", u_ff, 0},
    {"UTF-8 invalid in a key", u_key, 0},
    {"UTF-8 truncated at the end of input", u_trunc_end, 0},
    {"\\u0000 in a string", n_val, 0},
    {"\\u0000 in a key", n_key, 0},
    {"keys that differ after \\u0000", n_keys2, 0},
    {"raw NUL byte in a string", n_raw, 0},
    {"raw NUL after the document", n_after, 0},
    {"raw NUL, then a second document", n_after2, 0},
    {"raw NUL right after a number: [1␀]", n_afternum, 0},
    {"raw NUL right after a literal: [true␀]", n_aftertrue, 0},
    {"duplicate key", d_simple, 0},
    {"duplicate key, nested", d_nested, 0},
    {"duplicate key via \\u0061", d_esc, 0},
    {"duplicate of the first key, 131073rd of an object", g_dup_late, 0},
    {"16384 keys, one FNV-1a bucket (0.8 MB)", g_flood14, 0},
    {"16384 random keys (0.8 MB)", g_rand14, 0},
    {"65536 keys, one FNV-1a bucket (3.5 MB)", g_flood16, 0},
    {"65536 random keys (3.5 MB)", g_rand16, 0},
    {"1e999", num_inf, 0},
    {"-1e999", num_ninf, 0},
    {"1e-999", num_under, 0},
    {"-0", num_negz, 0},
    {"-0.0", num_negz2, 0},
    {"123456789012345678901234567890", num_big, 0},
    {"9223372036854775807", num_i64max, 0},
    {"9223372036854775808", num_i64over, 0},
    {"-9223372036854775809", num_i64under, 0},
    {"9007199254740993 (2^53+1)", num_2p53, 0},
    {"4.9e-324", num_min, 0},
    {"01", num_lead0, 0},
    {"1.", num_dot, 0},
    {".5", num_dotfirst, 0},
    {"+1", num_plus, 0},
    {"0x10", num_hex, 0},
    {"NaN", num_nan, 0},
    {"Infinity", num_infw, 0},
    {"-", num_minus, 0},
    {"1e", num_e, 0},
    {"every proper prefix of a config.json (250 B)", g_small, 1},
    {"trailing: [1] x", t_garbage, 0},
    {"trailing: [1]]", t_bracket, 0},
    {"trailing: {}{}", t_two, 0},
    {"trailing: 1 2", t_scalars, 0},
    {"trailing: [1],", t_comma, 0},
    {"BOM then [1]", b_bom, 0},
    {"BOM alone", b_bom_only, 0},
    {"two BOMs then [1]", b_bom2, 0},
    {"BOM then 1 (4 bytes)", b_bom_short, 0},
    {"UTF-16LE with BOM", b_utf16, 0},
    {"raw tab in a string", c_tab, 0},
    {"raw newline in a string", c_nl, 0},
    {"raw 0x01 in a string", c_01, 0},
    {"raw 0x1F in a string", c_1f, 0},
    {"raw DEL 0x7F in a string (valid)", c_del, 0},
    {"vertical tab as whitespace", c_vt_ws, 0},
    {"form feed as whitespace", c_ff_ws, 0},
    {"\"\\ud800\"", s_hi, 0},
    {"\"\\udc00\"", s_lo, 0},
    {"\"\\ud800\\u0041\"", s_hi_a, 0},
    {"\"\\ud800\\ud800\"", s_hi_hi, 0},
    {"\"a\\ud800\" (at the end)", s_hi_end, 0},
    {"\"\\udbff\\udfff\" (U+10FFFF, valid)", s_max, 0},
    {"escape \\x41", e_x, 0},
    {"escape \\u12zz", e_zz, 0},
    {"escape \\u12\"", e_short, 0},
    {"escape \\'", e_quote, 0},
    {"trailing comma [1,]", r_tcomma, 0},
    {"trailing comma {\"a\":1,}", r_tcomma_o, 0},
    {"comment", r_comment, 0},
    {"single quotes", r_squote, 0},
    {"unquoted key", r_unq, 0},
    {"empty input", r_empty, 0},
    {"whitespace only", r_ws, 0},
    {"top-level string", r_scalar, 0},
    {"[tru]", r_true_tr, 0},
};

typedef struct hres {
    int ok;
    size_t at;
    double secs;
    long long heap;
    char msg[200];
    char what[120]; /* what was read, when accepted */
} hres;
typedef struct harg {
    int lib;
    const doc *d;
    int every_prefix;
} harg;

static void esc_bytes(char *o, size_t cap, const char *s, size_t n, size_t max) {
    size_t k = 0;
    for (size_t i = 0; i < n && i < max && k + 6 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '|' && c != '\\')
            o[k++] = (char)c;
        else
            k += (size_t)snprintf(o + k, cap - k, "\\x%02X", c);
    }
    if (n > max && k + 4 < cap) k += (size_t)snprintf(o + k, cap - k, "...");
    o[k] = 0;
}

static void describe(int lib, const void *t, char *o, size_t cap) {
    /* unwrap [x] */
    if (lib == L_SPILL) {
        const spill_json *j = t;
        if (j->type == SPILL_JSON_ARRAY && j->n == 1) j = &j->items[0];
        if (j->type == SPILL_JSON_NUMBER) {
            if (j->is_int)
                snprintf(o, cap, "%.17g (int64 %lld)", j->number, (long long)j->integer);
            else
                snprintf(o, cap, "%.17g", j->number);
        } else if (j->type == SPILL_JSON_STRING) {
            char e[64];
            esc_bytes(e, sizeof e, j->str, j->len, 12);
            snprintf(o, cap, "string of %zu bytes \"%s\"", j->len, e);
        } else if (j->type == SPILL_JSON_OBJECT) {
            const spill_json *a = spill_json_get(j, "a");
            if (a && a->type == SPILL_JSON_NUMBER)
                snprintf(o, cap, "object of %zu keys, a=%g", j->n, a->number);
            else
                snprintf(o, cap, "object of %zu keys%s%s", j->n, a ? ", a is " : "",
                         a ? spill_json_type_name(a->type) : "");
        } else {
            snprintf(o, cap, "%s", spill_json_type_name(j->type));
        }
    } else if (lib == L_JANSSON) {
        const json_t *j = t;
        if (json_is_array(j) && json_array_size(j) == 1) j = json_array_get(j, 0);
        if (json_is_integer(j))
            snprintf(o, cap, "integer %lld", (long long)json_integer_value(j));
        else if (json_is_real(j))
            snprintf(o, cap, "%.17g", json_real_value(j));
        else if (json_is_string(j)) {
            char e[64];
            esc_bytes(e, sizeof e, json_string_value(j), json_string_length(j), 12);
            snprintf(o, cap, "string of %zu bytes \"%s\"", json_string_length(j), e);
        } else if (json_is_object(j)) {
            json_t *a = json_object_get(j, "a");
            if (json_is_number(a))
                snprintf(o, cap, "object of %zu keys, a=%g", json_object_size(j), json_number_value(a));
            else
                snprintf(o, cap, "object of %zu keys%s", json_object_size(j), a ? ", a is not a number" : "");
        } else
            snprintf(o, cap, "%s", json_is_array(j) ? "array" : "a literal");
    } else {
        const cJSON *j = t;
        if (cJSON_IsArray(j) && cJSON_GetArraySize(j) == 1) j = j->child;
        if (cJSON_IsNumber(j))
            snprintf(o, cap, "%.17g", j->valuedouble);
        else if (cJSON_IsString(j)) {
            char e[64];
            esc_bytes(e, sizeof e, j->valuestring, strlen(j->valuestring), 12);
            snprintf(o, cap, "string of %zu bytes \"%s\"", strlen(j->valuestring), e);
        } else if (cJSON_IsObject(j)) {
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "a");
            if (cJSON_IsNumber(a))
                snprintf(o, cap, "object of %d keys, a=%g", cJSON_GetArraySize(j), a->valuedouble);
            else
                snprintf(o, cap, "object of %d keys%s", cJSON_GetArraySize(j), a ? ", a is not a number" : "");
        } else
            snprintf(o, cap, "%s", cJSON_IsArray(j) ? "array" : "a literal");
    }
}

static void hostile_child(void *argp, void *outp) {
    harg *a = argp;
    hres *r = outp;
    if (a->every_prefix) {
        size_t n = a->d->n, accepted = 0;
        double t0 = now_s();
        for (size_t k = 0; k < n; k++) {
            char *c = malloc(k + 1);
            memcpy(c, a->d->p, k);
            c[k] = 0;
            result res;
            void *t = lib_parse(a->lib, c, k, &res);
            if (t) {
                if (!accepted) snprintf(r->what, sizeof r->what, "first at %zu bytes", k);
                accepted++;
            }
            lib_free(a->lib, t);
            free(c);
        }
        r->secs = now_s() - t0;
        r->ok = accepted > 0;
        snprintf(r->msg, sizeof r->msg, "%zu of %zu prefixes refused", n - accepted, n);
        return;
    }
    result res;
    count_start();
    double t0 = now_s();
    void *t = lib_parse(a->lib, a->d->p, a->d->n, &res);
    r->secs = now_s() - t0;
    r->heap = count_stop();
    r->ok = res.ok;
    r->at = res.at;
    snprintf(r->msg, sizeof r->msg, "%s", res.msg);
    if (t) describe(a->lib, t, r->what, sizeof r->what);
    lib_free(a->lib, t);
}

static void fmt_time(char *o, size_t cap, double s) {
    if (s < 1e-3)
        snprintf(o, cap, "%.0f µs", s * 1e6);
    else if (s < 1)
        snprintf(o, cap, "%.1f ms", s * 1e3);
    else
        snprintf(o, cap, "%.2f s", s);
}

static int cmd_hostile(int argc, char **argv) {
    const char *only = argc > 0 ? argv[0] : NULL;
    printf("| input | %s | %s | %s |\n|---|---|---|---|\n", lib_name[0], lib_name[1], lib_name[2]);
    for (size_t c = 0; c < sizeof hcases / sizeof *hcases; c++) {
        if (only && !strstr(hcases[c].name, only)) continue;
        doc d = hcases[c].make();
        printf("| %s |", hcases[c].name);
        for (int lib = 0; lib < NLIB; lib++) {
            harg a = {lib, &d, hcases[c].every_prefix};
            hres r;
            memset(&r, 0, sizeof r);
            int sig = in_child(hostile_child, &a, &r, sizeof r, 120);
            char cell[400], tm[32];
            if (sig) {
                snprintf(cell, sizeof cell, "**%s**", sig > 0 ? sig_name(sig) : "child failed");
            } else {
                fmt_time(tm, sizeof tm, r.secs);
                char heap[48] = "";
                if (r.heap > (1 << 20)) snprintf(heap, sizeof heap, ", heap %.0f MB", r.heap / 1048576.0);
                if (hcases[c].every_prefix)
                    snprintf(cell, sizeof cell, "%s%s%s (%s)", r.msg, r.ok ? "; accepted " : "", r.ok ? r.what : "",
                             tm);
                else if (r.ok)
                    snprintf(cell, sizeof cell, "accepted: %s (%s%s)", r.what, tm, heap);
                else
                    snprintf(cell, sizeof cell, "refused at %zu: %s (%s%s)", r.at, r.msg, tm, heap);
            }
            /* a table cell cannot hold '|' */
            for (char *p = cell; *p; p++)
                if (*p == '|')
                    *p = '/';
                else if ((unsigned char)*p < 0x20)
                    *p = '?';
            printf(" %s |", cell);
            fflush(stdout);
        }
        printf("\n");
        free(d.p);
    }
    return 0;
}

/* ---------- randomized differential check ---------- */
static const char *const seeds[] = {
    small_doc,
    "{\"model\":\"smollm2\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi \\u00e9\\ud83d\\ude00\\n\"}],"
    "\"max_tokens\":16,\"temperature\":0.7,\"stop\":[\"\\n\\n\"],\"stream\":true}",
    "[1,-2.5e-3,0,-0,1E+2,true,false,null,\"\",{},[]]",
    "{\"a\":{\"b\":{\"c\":[[[]]]}},\"d\":\"x\\\"y\\\\z\\/\\b\\f\\n\\r\\t\"}",
    "\"caf\\u00e9 \\u00ff\\u0100 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \\ud83d\\ude00\"",
    "{\"__metadata__\":{\"format\":\"pt\"},\"w\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]}}",
    "[12345678901234567890, 0.1, 1e308, 5e-324, 9007199254740993]",
    "{\"vocab\":{\"\xc4\xa0the\":1,\"\\u0120a\":2,\"\xc3\xa4\xc2\xb8\xc5\x83\":3},\"merges\":[\"\xc4\xa0 t\",\"a b\"]}",
};
static const char *const tokens[] = {
    "\\u0000",
    "\\ud800",
    "\\udc00",
    "\\ud83d\\ude00",
    "\\u00e9",
    "\\u12",
    "\\x",
    "1e999",
    "-0",
    "1e-999",
    "true",
    "null",
    ",",
    "\"a\":1,",
    "\"a\"",
    "[",
    "]",
    "{",
    "}",
    "\xEF\xBB\xBF",
    "\xc0\xaf",
    "\xed\xa0\x80",
    "\xf4\x90\x80\x80",
    "\xe2\x82",
    "99999999999999999999",
    "0.",
    ".0",
    "01",
    "+1",
    "/*x*/",
    "'a'",
    "NaN",
    "\t",
    "\r\n",
};
static const unsigned char interesting[] = "{}[]\":,\\/ubfnrt0123456789eE+-. \t\n\r\x00\x01\x1f\x7f\x80\xbf\xc0\xc2\xe0"
                                           "\xed\xef\xf0\xf4\xf5\xff";

static uint64_t rng_state;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static size_t mutate(char *b, size_t n, size_t cap) {
    int ops = 1 + (int)(rnd() % 3);
    for (int o = 0; o < ops; o++) {
        size_t at = n ? rnd() % (n + 1) : 0;
        switch (rnd() % 7) {
        case 0: /* replace a byte */
            if (at < n)
                b[at] = (char)(rnd() % 2 ? interesting[rnd() % (sizeof interesting - 1)] : (unsigned char)rnd());
            break;
        case 1: /* insert a byte */
            if (n + 1 < cap) {
                memmove(b + at + 1, b + at, n - at);
                b[at] = (char)interesting[rnd() % (sizeof interesting - 1)];
                n++;
            }
            break;
        case 2: /* delete a byte */
            if (at < n) {
                memmove(b + at, b + at + 1, n - at - 1);
                n--;
            }
            break;
        case 3: { /* insert a token */
            const char *t = tokens[rnd() % (sizeof tokens / sizeof *tokens)];
            size_t l = strlen(t);
            if (!strcmp(t, "\xEF\xBB\xBF") && rnd() % 2) at = 0;
            if (n + l < cap) {
                memmove(b + at + l, b + at, n - at);
                memcpy(b + at, t, l);
                n += l;
            }
            break;
        }
        case 4: { /* copy a span elsewhere */
            size_t from = n ? rnd() % n : 0, l = 1 + rnd() % 12;
            if (from + l > n) l = n - from;
            if (n + l < cap && l) {
                char tmp[16];
                memcpy(tmp, b + from, l);
                memmove(b + at + l, b + at, n - at);
                memcpy(b + at, tmp, l);
                n += l;
            }
            break;
        }
        case 5: /* truncate */
            if (rnd() % 4 == 0) n = at;
            break;
        default: /* swap two bytes */
            if (n > 1) {
                size_t x = rnd() % n, y = rnd() % n;
                char c = b[x];
                b[x] = b[y];
                b[y] = c;
            }
            break;
        }
    }
    return n;
}

/* a message without its variable parts: jansson's "near '...'", hex bytes */
static void norm_msg(char *o, size_t cap, const char *m) {
    snprintf(o, cap, "%.99s", m);
    char *p = strstr(o, " near ");
    if (p) *p = 0;
    if ((p = strstr(o, "0x")) && p[2]) p[2] = 'N', p[3] = p[3] ? 'N' : 0, p[4] = 0;
}

#define MAXCLASS 256
typedef struct dclass {
    char key[300];
    long count;
    char example[200];
} dclass;
static dclass classes[MAXCLASS];
static int nclasses;
static void add_class(const char *key, const char *in, size_t n) {
    for (int i = 0; i < nclasses; i++)
        if (!strcmp(classes[i].key, key)) {
            classes[i].count++;
            return;
        }
    if (nclasses == MAXCLASS) return;
    dclass *c = &classes[nclasses++];
    snprintf(c->key, sizeof c->key, "%s", key);
    c->count = 1;
    esc_bytes(c->example, sizeof c->example, in, n, 60);
}
static int class_cmp(const void *a, const void *b) {
    const dclass *x = a, *y = b;
    return (y->count > x->count) - (y->count < x->count);
}

static void diff_child(void *argp, void *outp) {
    long n = *(long *)argp;
    char *o = outp;
    size_t cap = 4096, oo = 0;
    char *b = malloc(cap + 1);
    long agree_ok = 0, agree_bad = 0, disagree = 0, value_diff = 0;
    for (long it = 0; it < n; it++) {
        const char *s = seeds[rnd() % (sizeof seeds / sizeof *seeds)];
        size_t len = strlen(s);
        memcpy(b, s, len);
        len = mutate(b, len, cap);
        b[len] = 0;
        result r[NLIB];
        void *t[NLIB];
        for (int lib = 0; lib < NLIB; lib++) t[lib] = lib_parse(lib, b, len, &r[lib]);
        char key[300], ms[100], mj[100];
        int all = r[0].ok + r[1].ok + r[2].ok;
        if (all == 3) {
            sbuf cb[NLIB] = {{0}};
            walk w;
            for (int lib = 0; lib < NLIB; lib++) lib_walk(lib, t[lib], &w, &cb[lib]);
            int sj = cb[0].n != cb[1].n || memcmp(cb[0].p, cb[1].p, cb[0].n),
                sc = cb[0].n != cb[2].n || memcmp(cb[0].p, cb[2].p, cb[0].n);
            if (sj || sc) {
                /* name the usual reasons: -0 read as the integer 0; a string cut at \u0000 */
                sbuf zb[NLIB] = {{0}};
                g_unsigned_zero = 1;
                for (int lib = 0; lib < NLIB; lib++) lib_walk(lib, t[lib], &w, &zb[lib]);
                g_unsigned_zero = 0;
                int zj = zb[0].n != zb[1].n || memcmp(zb[0].p, zb[1].p, zb[0].n),
                    zc = zb[0].n != zb[2].n || memcmp(zb[0].p, zb[2].p, zb[0].n);
                for (int lib = 0; lib < NLIB; lib++) free(zb[lib].p);
                char why[120] = "";
                int nul = memmem(b, len, "\\u0000", 6) != NULL;
                if (sj) strcat(why, zj ? "jansson differs" : "jansson reads -0 as the integer 0");
                if (sc)
                    strcat(why, sj ? "; " : ""),
                        strcat(why, zc ? (nul ? "cJSON cuts a string at \\u0000" : "cJSON differs") : "cJSON: -0");
                value_diff++;
                snprintf(key, sizeof key, "all three, values differ\t%s\t", why);
                add_class(key, b, len);
            } else {
                agree_ok++;
            }
            for (int lib = 0; lib < NLIB; lib++) free(cb[lib].p);
        } else if (all == 0) {
            agree_bad++;
        } else {
            disagree++;
            norm_msg(ms, sizeof ms, r[0].msg);
            norm_msg(mj, sizeof mj, r[1].msg);
            char who[64] = "";
            for (int lib = 0; lib < NLIB; lib++)
                if (r[lib].ok)
                    strcat(who, *who ? " + " : ""), strcat(who, lib == 0 ? "spill" : lib == 1 ? "jansson" : "cJSON");
            snprintf(key, sizeof key, "%s\t%s\t%s", who, r[0].ok ? "-" : ms, r[1].ok ? "-" : mj);
            add_class(key, b, len);
        }
        for (int lib = 0; lib < NLIB; lib++) lib_free(lib, t[lib]);
    }
    qsort(classes, (size_t)nclasses, sizeof *classes, class_cmp);
    oo += (size_t)snprintf(o + oo, 65536 - oo,
                           "%ld inputs: %ld accepted by all three with the same values, %ld refused by all three, %ld "
                           "accepted by all with different values, %ld accepted by some and refused by others.\n\n"
                           "| accepted by | spill's refusal | jansson's refusal | count | example (escaped) |\n"
                           "|---|---|---|---:|---|\n",
                           n, agree_ok, agree_bad, value_diff, disagree);
    for (int i = 0; i < nclasses && oo < 60000; i++) {
        for (char *p = classes[i].key; *p; p++)
            if (*p == '|')
                *p = '/';
            else if (*p == '\t')
                *p = '|';
        for (char *p = classes[i].example; *p; p++)
            if (*p == '|' || *p == '`') *p = '?';
        oo += (size_t)snprintf(o + oo, 65536 - oo, "| %s | %ld | `%s` |\n", classes[i].key, classes[i].count,
                               classes[i].example);
    }
    free(b);
}

static int cmd_diff(int argc, char **argv) {
    long n = 100000;
    rng_state = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--n"))
            n = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed"))
            rng_state = strtoull(argv[i + 1], NULL, 0) | 1;
    }
    char *out = calloc(1, 65536);
    double t0 = now_s();
    int sig = in_child(diff_child, &n, out, 65536, 600);
    if (sig) {
        printf("the differential run ended with %s\n", sig > 0 ? sig_name(sig) : "a failure");
        return 1;
    }
    printf("%s\n(%.1f s)\n", out, now_s() - t0);
    free(out);
    return 0;
}

/* one document from a file (or - for stdin), each library's verdict */
static int cmd_one(int argc, char **argv) {
    size_t len;
    char *buf = argc > 0 ? read_file(argv[0], &len) : NULL;
    if (!buf) return 2;
    for (int lib = 0; lib < NLIB; lib++) {
        result r;
        void *t = lib_parse(lib, buf, len, &r);
        char what[120] = "";
        if (t) describe(lib, t, what, sizeof what);
        printf("%-14s %s %s\n", lib_name[lib], t ? "accepted:" : "refused:", t ? what : r.msg);
        lib_free(lib, t);
    }
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "one")) return cmd_one(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "speed")) return cmd_speed(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "hostile")) return cmd_hostile(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "diff")) return cmd_diff(argc - 2, argv + 2);
    fprintf(stderr, "usage: json_bench speed [--reps N] [--lib spill|jansson|cjson] FILE... | hostile [NAME-SUBSTRING] "
                    "| diff [--n N] [--seed S] | one FILE\n");
    return 2;
}
