"""gpu: PyTorch allocates and computes through spill's pluggable allocator.

Run by ctest (label gpu) as: python3 preload_torch.py /path/to/libspill-preload.so
Exits 77 (skipped) with the reason when PyTorch or a CUDA device is missing."""
import sys

path = sys.argv[1]
try:
    import torch
except ImportError:
    print("SKIPPED: PyTorch is not installed (pip install torch)")
    sys.exit(77)
if not torch.cuda.is_available():
    print("SKIPPED: PyTorch sees no CUDA device")
    sys.exit(77)

alloc = torch.cuda.memory.CUDAPluggableAllocator(path, "spill_torch_malloc", "spill_torch_free")
torch.cuda.memory.change_current_allocator(alloc)
a = torch.randn(2048, 2048, device="cuda")
b = torch.randn(2048, 2048, device="cuda")
c = (a @ b).cpu()
ref = a.cpu() @ b.cpu()
err = (c - ref).abs().max().item() / ref.abs().max().item()
print(f"matmul through spill_torch_malloc: max relative error {err:.2e}")
sys.exit(0 if err < 1e-3 else 1)
