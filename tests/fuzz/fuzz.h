/* The fuzz targets' shared parts (tests/fuzz/README.md). Each target defines LLVMFuzzerTestOneInput;
 * built with clang -fsanitize=fuzzer it is a libFuzzer binary, built with regress.c it is a plain
 * program that feeds it every file of the seed corpus and of the regression inputs (ctest). */
#ifndef SPILL_FUZZ_H
#define SPILL_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The parsers read files (they mmap them): the input is written to `name` inside a scratch directory
 * of this process (on /dev/shm when there is one, removed at exit) and its path returned. */
const char *fuzz_file(const char *name, const uint8_t *data, size_t size);
/* The scratch directory itself (for the parsers that read a Hugging Face directory). */
const char *fuzz_dir(void);
/* A stream that discards what is written to it (the printers run on parsed data too). */
FILE *fuzz_null(void);

/* An invariant of a parser's output that must hold on every input: abort (a crash libFuzzer keeps). */
#define FUZZ_CHECK(x)                                                                             \
    do {                                                                                          \
        if (!(x)) {                                                                               \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #x);         \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

#endif
