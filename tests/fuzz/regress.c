/* A fuzz target without libFuzzer: every file of the directories given (the seed corpus, the
 * regression inputs of crashes found and fixed) through LLVMFuzzerTestOneInput once. A crash or a
 * failed invariant aborts; the first directory (the seed corpus) must not be empty, so that a
 * mistyped path cannot pass by testing nothing. */
#include <dirent.h>
#include <errno.h>
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "regress: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += r;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (!buf) return -1;
    /* an exact-size copy, so that ASan sees a read past the input's end */
    uint8_t *in = malloc(n ? n : 1);
    memcpy(in, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(in, n);
    free(in);
    return 0;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR [REGRESS_DIR...]\n", argv[0]);
        return 2;
    }
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    int total = 0;
    for (int a = 1; a < argc; a++) {
        DIR *d = opendir(argv[a]);
        if (!d) {
            if (a == 1 || errno != ENOENT) {
                fprintf(stderr, "regress: %s: %s\n", argv[a], strerror(errno));
                return 1;
            }
            continue; /* no regression inputs for this target (yet) */
        }
        char **names = NULL;
        int n = 0;
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            names = realloc(names, (size_t)(n + 1) * sizeof *names);
            names[n++] = strdup(e->d_name);
        }
        closedir(d);
        qsort(names, (size_t)n, sizeof *names, by_name);
        for (int i = 0; i < n; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[a], names[i]);
            if (run_file(path)) return 1;
            free(names[i]);
        }
        free(names);
        if (a == 1 && n == 0) {
            fprintf(stderr, "regress: %s: the seed corpus is empty\n", argv[a]);
            return 1;
        }
        printf("regress: %s: %d inputs\n", argv[a], n);
        total += n;
    }
    printf("regress: %d inputs, no crash\n", total);
    return 0;
}
