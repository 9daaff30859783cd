/* A stand-in for a Python extension module such as CuPy: a library linked against the CUDA runtime
 * (here tests/fake_cudart.c) that the program loads with dlopen(RTLD_LOCAL), so that the runtime is
 * in no global scope. test_preload_module calls cudaMalloc through it under the preload shim. */
#include <stddef.h>

#define API __attribute__((visibility("default")))

int cudaMalloc(void **p, size_t n);
int cudaFree(void *p);

API int fake_module_malloc(void **p, size_t n) { return cudaMalloc(p, n); }
API int fake_module_free(void *p) { return cudaFree(p); }
