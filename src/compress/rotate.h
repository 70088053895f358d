// QuaRot's rotation of the residual stream (computational invariance): every
// norm's scale is folded into the linears that read it (q/k/v, gate/up, the
// output head), the norms become 1, and the residual stream is multiplied by
// an orthogonal random Hadamard matrix Q — the embeddings' rows and the
// reading linears' rows by Q, the writing linears' (attn_output, ffn_down)
// columns by Qᵀ — so the model computes the same function while the weights
// lose their outlier channels, which is what makes them quantize better.
// SpinQuant's R2 rotates each attention head's values the same way: v_proj's
// rows per KV head by R2ᵀ and o_proj's columns per head by R2 (attention mixes
// values linearly, so o_proj sees the same thing). Both rotations are folded
// into the weights, so the result is an ordinary Llama-family model: any
// engine runs it. A tied output head is untied (the head has the final norm
// folded in, the embedding does not).
// R4 (QuaRot's online rotation before down_proj) rotates ffn_down's columns by
// a random Hadamard Q4 of the feed-forward size and records it in the config
// (ModelConfig::down_rotation): the forward pass rotates down's input (the
// SwiGLU product) by Q4 at run time, so only lmpress computes such a model.
#pragma once
#include <cstdint>
#include <string>

#include "model/model.h"

namespace lmpress {

struct RotateSpec {
  uint64_t seed = 0;   // the random signs (R2's: seed + 1)
  bool heads = true;   // also R2, per attention head (when the head size has a Hadamard matrix)
  bool down = false;   // also R4, online before ffn_down (seed + 2)
};

// "hadamard", "hadamard:SEED", either followed by ",r4"; fails naming `option`.
RotateSpec parse_rotate_spec(const std::string& text, const std::string& option);
// "hadamard:SEED[,r4]", as parse_rotate_spec reads it.
std::string rotate_spec_name(const RotateSpec& spec);

struct RotateReport {
  int64_t size = 0;   // the residual width rotated
  int64_t order = 1;  // the Paley factor of the Hadamard matrix (1: a power of two)
  bool heads = false;  // R2 applied (head size head_dim)
  int64_t down_size = 0, down_order = 1;  // R4's size (ffn_dim) and Paley factor; 0: no R4
  bool untied = false;
  std::string recorded;  // what m.rotation got: "hadamard:SEED R1", "... R1 R2" or "... R1 R2 R4"
};

// Rotates m in place (its float weights become owned f32 tensors) and records
// the rotation in m.rotation. Fails for quantized weights, a width with no
// Hadamard construction, and R4 on a model that has it already or whose
// layers differ in feed-forward size.
RotateReport rotate_model(Model& m, const RotateSpec& spec);

}  // namespace lmpress
