"""Helpers for the scripts that rewrite a GGUF with the gguf package (scripts/gguf_first_layers.py,
benchmarks/peers/bench_formats.py): the metadata copied key by key, and the file written under a
temporary name and moved into place only when whole."""
import os


def copy_fields(r, w, overrides=None):
    """every metadata key of GGUFReader r into GGUFWriter w, as it was, but those in overrides
    (name -> value, written with the key's own type)"""
    from gguf import GGUFValueType

    overrides = overrides or {}
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.alignment"):
            continue
        t = f.types[0]
        if name in overrides:
            w.add_key_value(name, overrides[name], t)
        elif t == GGUFValueType.ARRAY:
            if f.types[1] == GGUFValueType.STRING:
                v = [bytes(f.parts[i]).decode("utf-8", "surrogateescape") for i in f.data]
            else:
                v = [f.parts[i].tolist()[0] for i in f.data]
            w.add_array(name, v)
        elif t == GGUFValueType.STRING:
            w.add_key_value(name, bytes(f.parts[f.data[0]]).decode("utf-8", "surrogateescape"), t)
        else:
            w.add_key_value(name, f.parts[f.data[0]].tolist()[0], t)


def finish(w, tmp, dst):
    """write w (opened on tmp) out and move it to dst: a reader never sees half a file"""
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, dst)
