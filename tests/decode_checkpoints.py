#!/usr/bin/env python3
"""Independent decoders of the int-N checkpoint layouts, written from the
format notes (docs/int-group-format.md, docs/awq-format.md,
docs/compressed-tensors-format.md) with numpy only, not from lmpress's code.

usage: decode_checkpoints.py REFERENCE_DIR CHECKPOINT_DIR...
REFERENCE_DIR: the same model as an f32 Hugging Face directory. Every
quantized linear of every checkpoint, decoded here, must equal the reference's
weight exactly (lmpress wrote the reference from the values it quantized to),
and every other tensor too (in the checkpoint's dtype). Prints one line per checkpoint; exits 1
on the first difference."""
import json
import re
import struct
import sys

import numpy as np

DT = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "I64": np.int64, "U8": np.uint8, "I8": np.int8,
      "BF16": None}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=DT[t["dtype"]]).reshape(t["shape"])
    return out


def unpack_bits_stream(words, n, bits):
    """GPTQ: value i in bits [bits*i, bits*(i+1)) of the little-endian stream of 32-bit words."""
    u = np.ascontiguousarray(words).view(np.uint32).astype(np.uint64)
    out = np.zeros(n, dtype=np.int64)
    for i in range(n):
        bit = bits * i
        w, o = divmod(bit, 32)
        v = int(u[w]) >> o
        if o + bits > 32:
            v |= int(u[w + 1]) << (32 - o)
        out[i] = v & ((1 << bits) - 1)
    return out


def decode_gptq(t, qc):
    bits, G = qc["bits"], qc["group_size"]  # qc: the module's, with its dynamic override applied
    qweight, qzeros, scales = t["qweight"], t["qzeros"], t["scales"].astype(np.float32)
    rows = qweight.shape[1]
    cols = qweight.shape[0] * 32 // bits
    q = np.stack([unpack_bits_stream(qweight[:, r], cols, bits) for r in range(rows)])  # [rows, cols]
    z = np.stack([unpack_bits_stream(qzeros[g], rows, bits) for g in range(qzeros.shape[0])]) + 1  # v1: stored z - 1
    g_idx = t["g_idx"] if "g_idx" in t else np.arange(cols) // (cols if G == -1 else G)
    return (q - z.T[:, g_idx]) * scales.T[:, g_idx]


AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]


def unpack_awq(p):
    u = np.ascontiguousarray(p).view(np.uint32)
    iw = np.zeros((u.shape[0], u.shape[1] * 8), dtype=np.uint8)
    for k in range(8):
        iw[:, k::8] = (u >> (4 * AWQ_REVERSE_ORDER[k])) & 0xF
    return iw


def decode_awq(t, qc):
    G = qc["group_size"]
    q = unpack_awq(t["qweight"]).astype(np.float32)  # [in, out]
    G = q.shape[0] if G == -1 else G
    z = np.repeat(unpack_awq(t["qzeros"]).astype(np.float32), G, 0)
    s = np.repeat(t["scales"].astype(np.float32), G, 0)
    return ((q - z) * s).T


def unpack_from_int32(p, bits, shape, packed_dim=1):
    u = np.ascontiguousarray(p).view(np.uint32)
    if packed_dim == 0:
        u = u.T
    pf, mask = 32 // bits, (1 << bits) - 1
    out = np.zeros((u.shape[0], u.shape[1] * pf), dtype=np.int32)
    for i in range(pf):
        out[:, i::pf] = (u >> (bits * i)) & mask
    out = out[:, :shape[1] if packed_dim == 1 else shape[0]]
    if packed_dim == 0:
        out = out.T
    return (out - (1 << (bits - 1))).astype(np.int32)


def decode_ct(t, w):
    """w: the weights args of the module's config group."""
    bits = w["num_bits"]
    out_f, in_f = (int(x) for x in t["weight_shape"])
    q = unpack_from_int32(t["weight_packed"], bits, (out_f, in_f)).astype(np.float32)
    s = t["weight_scale"].astype(np.float32)
    zp = (unpack_from_int32(t["weight_zero_point"], bits, (out_f, s.shape[1]), 0).astype(np.float32)
          if not w["symmetric"] else np.zeros_like(s))
    G = in_f if w["strategy"] == "channel" else w["group_size"]
    g = t["weight_g_idx"] if "weight_g_idx" in t else np.arange(in_f) // G
    return (q - zp[:, g]) * s[:, g]


def decode_ct_int(t, qc):
    """int-quantized (W8A8, W4A8): signed weight values (a byte each) times their scale, [out, 1] per channel or
    [out, G] per channel and group of in / G consecutive columns."""
    w, s = t["weight"].astype(np.float32), t["weight_scale"].astype(np.float32)
    return w * np.repeat(s, w.shape[1] // s.shape[1], axis=1)


SUFFIXES = {"gptq": ["qweight", "qzeros", "scales", "g_idx"], "awq": ["qweight", "qzeros", "scales"],
            "compressed-tensors": ["weight_packed", "weight_scale", "weight_zero_point", "weight_shape",
                                   "weight_g_idx"]}
DECODE = {"gptq": decode_gptq, "awq": decode_awq, "compressed-tensors": decode_ct}


def ct_match(name, target):
    """compressed-tensors / vLLM: an exact name, or re: with Python's re.match."""
    return re.match(target[3:], name) is not None if target.startswith("re:") else name == target


FUSED = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj", "gate_proj": "gate_up_proj",
         "up_proj": "gate_up_proj"}
SHARDS = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}


def vllm_format(qc, module):
    """What vLLM makes of the layer holding `module`: its layers fuse q/k/v (qkv_proj) and gate/up
    (gate_up_proj). GPTQ's dynamic rules and AWQ's list are matched against the fused name; compressed-tensors
    resolves ignore over the shards, then the fused name against name/regex targets, then the class
    (Linear), then the shards (find_matched_target)."""
    parent, _, leaf = module.rpartition(".")
    name = parent + "." + FUSED.get(leaf, leaf)
    if qc["quant_method"] != "compressed-tensors":
        return module_format(qc, name)
    shards = [parent + "." + s for s in SHARDS.get(FUSED.get(leaf, ""), [leaf])]
    ignored = [any(ct_match(s, t) for t in qc.get("ignore") or []) for s in shards]
    if any(ignored) != all(ignored):
        return "shards ignored differently"
    if all(ignored):
        return None
    targets = {}
    for g in qc["config_groups"].values():
        for t in g["targets"]:
            targets[t] = g["weights"]
    for t, w in targets.items():
        if t != "Linear" and ct_match(name, t):
            return w
    if "Linear" in targets:
        return targets["Linear"]
    return None


def module_format(qc, module):
    """What the config says of a linear (its HF module name), as each engine reads it:
    None (stored unquantized) or the argument its decoder takes."""
    method = qc["quant_method"]
    if method == "gptq":  # vLLM's get_dynamic_override: first match, "-:" skips, "+:" overrides
        for pattern, over in (qc.get("dynamic") or {}).items():
            if pattern.startswith("-:"):
                if re.match(pattern[2:], module):
                    return None
            elif re.match(pattern[2:] if pattern.startswith("+:") else pattern, module):
                return {**qc, **over}
        return qc
    if method == "awq":  # is_layer_skipped_awq: a substring of the name
        return None if any(s in module for s in qc.get("modules_to_not_convert") or []) else qc
    if any(ct_match(module, t) for t in qc.get("ignore") or []):
        return None
    groups = list(qc["config_groups"].values())
    for g in groups:  # names and patterns before the class
        if any(t != "Linear" and ct_match(module, t) for t in g["targets"]):
            return g["weights"]
    for g in groups:
        if "Linear" in g["targets"]:
            return g["weights"]
    return None


def main():
    ref = read_safetensors(sys.argv[1] + "/model.safetensors")
    for d in sys.argv[2:]:
        qc = json.load(open(d + "/config.json"))["quantization_config"]
        method = qc["quant_method"]
        tensors = read_safetensors(d + "/model.safetensors")
        groups, plain = {}, {}
        int_quantized = qc.get("format") == "int-quantized"
        scaled = {n.rpartition(".")[0] for n in tensors if n.endswith(".weight_scale")}
        for name, a in tensors.items():
            prefix, _, suffix = name.rpartition(".")
            if int_quantized and prefix in scaled and suffix in ("weight", "weight_scale"):
                groups.setdefault(prefix, {})[suffix] = a
            elif not int_quantized and suffix in SUFFIXES[method]:
                groups.setdefault(prefix, {})[suffix] = a
            else:
                plain[name] = a
        for prefix, t in groups.items():
            fmt = qc if int_quantized else module_format(qc, prefix)
            if not int_quantized and vllm_format(qc, prefix) != fmt:
                print(f"{d}: {prefix}: vLLM's fused layer would take {vllm_format(qc, prefix)}, not {fmt}")
                sys.exit(1)
            if fmt is None:
                print(f"{d}: {prefix} is packed but the config leaves it unquantized")
                sys.exit(1)
            w = decode_ct_int(t, qc) if int_quantized else DECODE[method](t, fmt)
            want = ref[prefix + ".weight"]
            if w.shape != want.shape or not np.array_equal(w.astype(np.float32), want):
                print(f"{d}: {prefix}: decoded weight differs from the reference "
                      f"(max |diff| {np.abs(w - want).max() if w.shape == want.shape else 'shape'})")
                sys.exit(1)
        for name, a in plain.items():
            prefix, _, suffix = name.rpartition(".")
            if (suffix == "weight" and ".layers." in prefix and name in ref and a.ndim == 2 and not int_quantized and
                    (module_format(qc, prefix) is not None or vllm_format(qc, prefix) is not None)):
                print(f"{d}: {prefix} is stored unquantized but the config quantizes it")
                sys.exit(1)
            if not np.array_equal(a, ref[name].astype(a.dtype)):
                print(f"{d}: {name} differs from the reference")
                sys.exit(1)
        if not groups:
            print(f"{d}: no quantized linear found")
            sys.exit(1)
        print(f"{d}: {method}: {len(groups)} linears decoded, {len(plain)} tensors plain, equal to the reference")


if __name__ == "__main__":
    main()
