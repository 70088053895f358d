#!/usr/bin/env python3
"""Compare the tensors of two GGUF files by name: type, shape and bytes.
Usage: gguf-diff.py A.gguf B.gguf  (exit 1 if any tensor differs)"""
import struct, sys

SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
BLOCK = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
         10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 20: (32, 18),
         16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 21: (256, 110), 22: (256, 82), 23: (256, 136),
         29: (256, 56), 34: (256, 54), 35: (256, 66), 39: (32, 17), 0x4C4D0001: (256, 66)}
NAMES = {0: "F32", 1: "F16", 30: "BF16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K",
         11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 20: "IQ4_NL", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS",
         19: "IQ1_S", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 29: "IQ1_M", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
         0x4C4D0001: "LMP2"}  # lmpress's own (src/kernels/lmp2.h)

def read(path):
    b = open(path, "rb").read()
    o = 0
    def u(fmt):
        nonlocal o
        v = struct.unpack_from("<" + fmt, b, o); o += struct.calcsize(fmt); return v[0]
    def s():
        nonlocal o
        n = u("Q"); v = b[o:o + n].decode(); o += n; return v
    def val(t):
        if t == 8: return s()
        if t == 9:
            et, n = u("I"), u("Q"); return [val(et) for _ in range(n)]
        fmt = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}[t]
        return u(fmt)
    assert b[:4] == b"GGUF"; o = 4
    u("I"); nt, nkv = u("Q"), u("Q")
    kv = {}
    for _ in range(nkv):
        k = s(); kv[k] = val(u("I"))
    infos = []
    for _ in range(nt):
        name = s(); nd = u("I"); ne = [u("Q") for _ in range(nd)]; t = u("I"); off = u("Q")
        infos.append((name, ne, t, off))
    align = kv.get("general.alignment", 32)
    data = (o + align - 1) // align * align
    out = {}
    for name, ne, t, off in infos:
        n = 1
        for d in ne: n *= d
        be, bb = BLOCK[t]
        out[name] = (NAMES[t], ne, b[data + off: data + off + n // be * bb])
    return out

a, b = read(sys.argv[1]), read(sys.argv[2])
bad = 0
for name in sorted(set(a) | set(b)):
    if name not in a or name not in b:
        print(f"{name}: only in {'A' if name in a else 'B'}"); bad += 1; continue
    ta, tb = a[name], b[name]
    if ta[0] != tb[0] or ta[1] != tb[1]:
        print(f"{name}: {ta[0]}{ta[1]} vs {tb[0]}{tb[1]}"); bad += 1
    elif ta[2] != tb[2]:
        nd = sum(x != y for x, y in zip(ta[2], tb[2]))
        print(f"{name}: {ta[0]} bytes differ ({nd} of {len(ta[2])})"); bad += 1
print(f"{len(a)} tensors, {bad} differ")
sys.exit(1 if bad else 0)
