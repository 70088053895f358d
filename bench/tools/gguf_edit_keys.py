#!/usr/bin/env python3
"""Copies a GGUF file with string metadata values replaced (or added where the key is missing) and the tensors whose
names match a regex left out, byte for byte otherwise (the other tensors' data where it was; the data section
re-aligned). gguf-py's writer refuses some files llama.cpp writes (empty arrays), so this walks the format itself.
Usage: gguf_edit_keys.py IN OUT [KEY=VALUE ...] [--drop-tensors REGEX]"""
import re
import struct
import sys

SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value types with fixed sizes


def value_end(buf, pos, vtype):
    if vtype in SIZES:
        return pos + SIZES[vtype]
    if vtype == 8:  # string
        (n,) = struct.unpack_from("<Q", buf, pos)
        return pos + 8 + n
    if vtype == 9:  # array
        etype, n = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        if etype in SIZES:
            return pos + n * SIZES[etype]
        for _ in range(n):
            pos = value_end(buf, pos, etype)
        return pos
    raise ValueError("unknown GGUF value type %d" % vtype)


def string_kv(key, value):
    return struct.pack("<Q", len(key)) + key + struct.pack("<IQ", 8, len(value)) + value


def main():
    src, dst, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    drop = None
    if "--drop-tensors" in args:
        i = args.index("--drop-tensors")
        drop = re.compile(args[i + 1])
        args = args[:i] + args[i + 2:]
    new = {k.encode(): v.encode() for k, v in (a.split("=", 1) for a in args)}
    buf = open(src, "rb").read()
    magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", buf, 0)
    if magic != b"GGUF" or version < 2:
        sys.exit("%s: not a GGUF v2+ file" % src)
    pos, kept, alignment = 24, [], 32
    for _ in range(n_kv):
        start = pos
        (klen,) = struct.unpack_from("<Q", buf, pos)
        key = buf[pos + 8 : pos + 8 + klen]
        pos += 8 + klen
        (vtype,) = struct.unpack_from("<I", buf, pos)
        if key == b"general.alignment":
            (alignment,) = struct.unpack_from("<I", buf, pos + 4)
        pos = value_end(buf, pos + 4, vtype)
        if key in new:
            if vtype != 8:
                sys.exit("%s: %s is not a string" % (src, key.decode()))
            kept.append(string_kv(key, new.pop(key)))
        else:
            kept.append(buf[start:pos])
    kept += [string_kv(k, v) for k, v in new.items()]
    infos = []  # (name, info bytes without the offset, offset)
    for _ in range(n_tensors):
        start = pos
        (nlen,) = struct.unpack_from("<Q", buf, pos)
        name = buf[pos + 8 : pos + 8 + nlen].decode()
        pos += 8 + nlen
        (n_dims,) = struct.unpack_from("<I", buf, pos)
        pos += 4 + 8 * n_dims + 4
        (offset,) = struct.unpack_from("<Q", buf, pos)
        pos += 8
        infos.append((name, buf[start : pos - 8], offset))
    data_start = (pos + alignment - 1) // alignment * alignment
    # ggml packs each tensor's bytes padded to the alignment, in order: a tensor's share runs to the next offset.
    ends = sorted(o for _, _, o in infos) + [len(buf) - data_start]
    chunk = {o: ends[i + 1] - o for i, o in enumerate(ends[:-1])}
    kept_infos, data, offset = [], [], 0
    for name, info, o in infos:
        if drop and drop.search(name):
            continue
        kept_infos.append(info + struct.pack("<Q", offset))
        data.append(buf[data_start + o : data_start + o + chunk[o]])
        offset += chunk[o]
    head = struct.pack("<4sIQQ", magic, version, len(kept_infos), len(kept)) + b"".join(kept) + b"".join(kept_infos)
    head += b"\0" * ((-len(head)) % alignment)
    with open(dst, "wb") as f:
        f.write(head)
        for d in data:
            f.write(d)


if __name__ == "__main__":
    main()
