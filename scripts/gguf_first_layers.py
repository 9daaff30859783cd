#!/usr/bin/env python3
"""Copy a GGUF model keeping only its first N transformer layers (blk.0 .. blk.N-1), every other
tensor and every metadata key as they are (the block count set to N): a smaller file of a real
model's shapes, vocabulary and tokenizer, e.g. to carry SmolLM2 to a machine that has no network
(scripts/gpu-check.sh's SmolLM2 steps). Its text is not the full model's; greedy runs of it are
still deterministic, so two ways of running it can be compared token for token.

    scripts/gguf_first_layers.py IN.gguf N OUT.gguf

Needs the gguf package (pip install gguf)."""
import os
import sys


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[3]
    try:
        n = int(sys.argv[2])
    except ValueError:
        sys.exit(f"gguf_first_layers: N '{sys.argv[2]}' is not a number")
    from gguf import GGUFReader, GGUFWriter

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gguf_meta import copy_fields, finish

    r = GGUFReader(src)
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
    key = f"{arch}.block_count"
    have = r.fields[key].parts[r.fields[key].data[0]].tolist()[0]
    if not 1 <= n <= have:
        sys.exit(f"gguf_first_layers: {src} has {have} layers; N must be 1..{have}, not {n}")
    tmp = dst + ".tmp"
    w = GGUFWriter(tmp, arch)
    copy_fields(r, w, {key: n})
    kept = 0
    for t in r.tensors:
        if t.name.startswith("blk.") and int(t.name.split(".")[1]) >= n:
            continue
        w.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
        kept += 1
    finish(w, tmp, dst)
    print(f"gguf_first_layers: {dst}: {n} of {have} layers, {kept} tensors, {os.path.getsize(dst) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
