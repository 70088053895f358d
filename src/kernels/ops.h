// Element-wise and normalization operations of the transformer block.
// Scalar reference code; vectorized versions are checked against these.
#pragma once
#include <cstdint>
#include <vector>


namespace lmpress {

// Which dimensions RoPE rotates together. GGUF "llama" files and llama2.c
// checkpoints pair (2i, 2i+1); Hugging Face checkpoints (and GGUF "qwen2")
// pair (i, i + d/2) ("rotate_half"). Converting between them permutes q/k rows.
enum class RopeLayout { Interleaved, Halves };

// out = x / sqrt(mean(x²) + eps) * w   (n elements)
void rmsnorm(const float* x, const float* w, int64_t n, float eps, float* out);
// Each of the n rows of x (cols values) replaced by its int8 quantization per
// token: s = max|row| / 127, x <- s·round(x / s) (ties to even, as torch.round);
// what a W8A8 int8 GEMM's dynamic per-token activation quantization computes.
void fake_quant_int8_rows(float* x, int64_t n, int64_t cols);
// Rotates `n_heads` heads of `head_dim` in place for position `pos`; only the
// first inv_freqs.size()*2 dimensions of each head are rotated.
void rope(float* v, int64_t n_heads, int64_t head_dim, int64_t pos, const std::vector<float>& inv_freqs,
          RopeLayout layout);
// gate[i] = silu(gate[i]) * up[i] (AVX2 when available: e^x to a few ulp).
void silu_mul(float* gate, const float* up, int64_t n);
void silu_mul_ref(float* gate, const float* up, int64_t n);
// gate[i] = gelu(gate[i]) * up[i] with GELU's tanh approximation (PyTorch's
// gelu(approximate="tanh"), Gemma's GeGLU): 0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³))),
// computed as g / (1 + e^(−2z)) with z the tanh's argument.
void gelu_tanh_mul(float* gate, const float* up, int64_t n);
// gpt-oss's clamped SwiGLU (ggml's swiglu_oai, α = 1.702, limit 7): g = min(gate, 7), u = clamp(up, −7, 7),
// gate ← g·σ(α·g)·(u + 1). Scalar: its experts are small next to their matmuls.
void swiglu_oai_mul(float* gate, const float* up, int64_t n);
void gelu_tanh_mul_ref(float* gate, const float* up, int64_t n);
// Each of n values x replaced by cap · tanh(x / cap) (Gemma 2's logit soft-capping).
void softcap(float* x, int64_t n, float cap);
// n floats to IEEE halves and back (F16C when available; bit-exact either way).
void to_f16(const float* x, int64_t n, uint16_t* out);
void from_f16(const uint16_t* h, int64_t n, float* out);
// n bfloat16 values to floats (a 16-bit shift; AVX2 when available).
void from_bf16(const uint16_t* h, int64_t n, float* out);

}  // namespace lmpress
