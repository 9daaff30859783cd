/* The NEON dot products with the int8 dot product (SDOT, Armv8.2 dotprod; Grace's Neoverse V2 has
 * it): one instruction gives a block's 4-product sums. Compiled with +dotprod for this file only
 * (CMakeLists.txt) and run only where kernels/cpu.c finds HWCAP_ASIMDDP. */
#include <arm_neon.h>

#define SUM4(a, b) vdotq_s32(vdupq_n_s32(0), a, b)
#define DOT_TABLE spill_dot_neon_dotprod
#include "dot_neon.h"
