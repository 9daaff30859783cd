// What every kernel file shares: the one CUDA check (common/spill_cuda_check.h) and the grid size.
#pragma once
#include <cuda_runtime.h>

#include "spill_cuda_check.h"

static inline unsigned spill_cu_blocks(long long n, int threads) { return (unsigned)((n + threads - 1) / threads); }
