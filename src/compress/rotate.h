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
// into the weights (no online rotation), so the result is an ordinary
// Llama-family model: any engine runs it. A tied output head is untied (the
// head has the final norm folded in, the embedding does not).
#pragma once
#include <cstdint>
#include <string>

#include "model/model.h"

namespace lmpress {

struct RotateSpec {
  uint64_t seed = 0;   // the random signs (R2's: seed + 1)
  bool heads = true;   // also R2, per attention head (when the head size has a Hadamard matrix)
};

// "hadamard" or "hadamard:SEED"; fails naming `option`.
RotateSpec parse_rotate_spec(const std::string& text, const std::string& option);
// "hadamard:SEED", as parse_rotate_spec reads it.
std::string rotate_spec_name(const RotateSpec& spec);

struct RotateReport {
  int64_t size = 0;   // the residual width rotated
  int64_t order = 1;  // the Paley factor of the Hadamard matrix (1: a power of two)
  bool heads = false;  // R2 applied (head size head_dim)
  bool untied = false;
  std::string recorded;  // what m.rotation got: "hadamard:SEED R1" or "hadamard:SEED R1 R2"
};

// Rotates m in place (its float weights become owned f32 tensors) and records
// the rotation in m.rotation. Fails for quantized weights or a width with no
// Hadamard construction.
RotateReport rotate_model(Model& m, const RotateSpec& spec);

}  // namespace lmpress
