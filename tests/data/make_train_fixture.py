#!/usr/bin/python3
"""Writes tests/data/train_fixture/: a tiny Llama (HF layout, F32 weights, byte-level BPE tokenizer) and the
gradients PyTorch's autograd computes for the mean next-token cross-entropy of fixed sequences, in float64
(grads.safetensors, F32; fixture.json: the tokens, targets and loss). The forward is written here from
transformers' modeling_llama (RMSNorm, rotate_half RoPE, repeat_kv, causal softmax attention, SwiGLU), not
from lmpress. Run once (needs python3-torch); the test (src/train/train_fixture_test.cc) does not need torch."""
import json, os, struct, sys
import torch

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "train_fixture")
os.makedirs(out, exist_ok=True)
torch.manual_seed(24)
V, D, L, H, KV, F, CTX, EPS, THETA = 262, 16, 2, 4, 2, 24, 16, 1e-6, 500.0
hd = D // H
W = {"model.embed_tokens.weight": torch.randn(V, D) * 0.5}
for l in range(L):
    p = f"model.layers.{l}."
    W[p + "input_layernorm.weight"] = 1 + 0.1 * torch.randn(D)
    W[p + "self_attn.q_proj.weight"] = torch.randn(H * hd, D) * 0.3
    W[p + "self_attn.k_proj.weight"] = torch.randn(KV * hd, D) * 0.3
    W[p + "self_attn.v_proj.weight"] = torch.randn(KV * hd, D) * 0.3
    W[p + "self_attn.o_proj.weight"] = torch.randn(D, H * hd) * 0.3
    W[p + "post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(D)
    W[p + "mlp.gate_proj.weight"] = torch.randn(F, D) * 0.3
    W[p + "mlp.up_proj.weight"] = torch.randn(F, D) * 0.3
    W[p + "mlp.down_proj.weight"] = torch.randn(D, F) * 0.3
W["model.norm.weight"] = 1 + 0.1 * torch.randn(D)
W["lm_head.weight"] = torch.randn(V, D) * 0.3
W = {k: v.float() for k, v in W.items()}


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for k, t in tensors.items():
        b = t.contiguous().float().numpy().tobytes()
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def forward(P, tokens):
    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w

    def rotate_half(x):
        return torch.cat((-x[..., hd // 2:], x[..., : hd // 2]), dim=-1)

    B, n = tokens.shape
    inv = 1.0 / (THETA ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    # The angle rounded to float32 as llama.cpp and lmpress compute it; cos/sin in double.
    ang = (torch.arange(n, dtype=torch.float32)[:, None] * inv.float()[None, :]).double()
    emb = torch.cat((ang, ang), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    x = P["model.embed_tokens.weight"][tokens]
    mask = torch.full((n, n), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms(x, P[p + "input_layernorm.weight"])
        q = (h @ P[p + "self_attn.q_proj.weight"].T).view(B, n, H, hd).transpose(1, 2)
        k = (h @ P[p + "self_attn.k_proj.weight"].T).view(B, n, KV, hd).transpose(1, 2)
        v = (h @ P[p + "self_attn.v_proj.weight"].T).view(B, n, KV, hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)
        a = torch.softmax(q @ k.transpose(-1, -2) / hd ** 0.5 + mask, dim=-1) @ v
        x = x + a.transpose(1, 2).reshape(B, n, H * hd) @ P[p + "self_attn.o_proj.weight"].T
        h = rms(x, P[p + "post_attention_layernorm.weight"])
        g = h @ P[p + "mlp.gate_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * (h @ P[p + "mlp.up_proj.weight"].T)) @ P[p + "mlp.down_proj.weight"].T
    return rms(x, P["model.norm.weight"]) @ P["lm_head.weight"].T


g = torch.Generator().manual_seed(5)
B, n = 3, 11
tokens = torch.randint(0, V, (B, n), generator=g)
targets = torch.randint(0, V, (B, n), generator=g)
P = {k: v.double().requires_grad_(True) for k, v in W.items()}
logits = forward(P, tokens)
loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
loss.backward()

write_safetensors(os.path.join(out, "model.safetensors"), W)
write_safetensors(os.path.join(out, "grads.safetensors"), {k: P[k].grad for k in W})
json.dump({"architectures": ["LlamaForCausalLM"], "hidden_size": D, "intermediate_size": F, "num_hidden_layers": L,
           "num_attention_heads": H, "num_key_value_heads": KV, "vocab_size": V, "max_position_embeddings": CTX,
           "rms_norm_eps": EPS, "rope_theta": THETA, "tie_word_embeddings": False, "hidden_act": "silu"},
          open(os.path.join(out, "config.json"), "w"), indent=1)
json.dump({"tokens": tokens.tolist(), "targets": targets.tolist(), "loss": loss.item(),
           "torch": torch.__version__}, open(os.path.join(out, "fixture.json"), "w"), indent=1)


# The byte-level BPE tokenizer of tests/synthetic_model.cc (the loader wants one; the test feeds token ids).
def byte_char(b):
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, extra = bs[:], 0
    for c in range(256):
        if c not in bs:
            bs.append(c)
            cs.append(256 + extra)
            extra += 1
    return chr(dict(zip(bs, cs))[b])


vocab = {byte_char(b): b for b in range(256)}
G = byte_char(ord(" "))
merges = [G + " t", "h e", G + "t he", "i n"]
for i, m in enumerate(merges):
    vocab[m.replace(" ", "")] = 256 + i
json.dump({"added_tokens": [{"id": 260, "content": "<|bos|>", "special": True},
                            {"id": 261, "content": "<|eos|>", "special": True}],
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
           "model": {"type": "BPE", "vocab": vocab, "merges": merges}},
          open(os.path.join(out, "tokenizer.json"), "w"), indent=1, ensure_ascii=False)
json.dump({"add_bos_token": True, "bos_token": "<|bos|>", "eos_token": "<|eos|>"},
          open(os.path.join(out, "tokenizer_config.json"), "w"))
print("loss", loss.item())
