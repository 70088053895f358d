// The ggml types whose blocks decode exactly to small integers under integer
// group scales: the codebook types IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S,
// IQ3_XXS, IQ3_S, the non-linear IQ4_XS, the ternary TQ1_0 and TQ2_0,
// MXFP4, lmpress's LMP2 (exact in its rotated basis), and Q6_K and Q3_K (for the prompt panels of kernels/int_panels.h;
// their dequantization and dots keep their own kernels). Element i of a
// block is d · ls[i / group] · q[i], every product exact
// in float (so the dequantized values equal ggml's bit for bit whatever the
// order), and the dot product with int8 activations is an exact integer sum
// per block: one unpacker per type serves both (ggml writes one loop for each).
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "kernels/blocks.h"

namespace lmpress {

struct UnpackedBlock {
  float d;          // block scale times the type's unit (a power of two)
  int16_t ls[16];   // integer scale of each group
  int8_t q[QK_K];   // the values (codebook entries with their signs)
};

struct IntBlockFormat {
  DType type;
  int elems;  // per block
  int group;  // elements under one ls
  void (*unpack)(const uint8_t* block, UnpackedBlock& out);
  int max_abs;  // the largest |value| unpack gives (tested)
  // Prompt panels only where they are exact (VNNI, or AVX2's kernels for
  // values within ±64): the type's own prompt path (f32 tiles of the exact
  // values) loses nothing, where the Q8_0_X8 panels round a 32-value chunk's
  // two group scales to one.
  bool exact_panels_only = false;
  // Blocks hold the weights rotated (lmp2: kernels/lmp2.h): dots take
  // rotated activations, dequantization rotates back.
  bool rotated = false;
};

// The format of t, or null when t is not one of these types.
const IntBlockFormat* int_block_format(DType t);
// n elements (a multiple of f.elems) of f's blocks to floats.
void dequantize_int_blocks(const IntBlockFormat& f, const uint8_t* blocks, int64_t n, float* y);

// Σ over n elements of f's blocks times int8 activations (kernels/qdot.h):
// Q8_K blocks for the 256-element formats, Q8_0 for MXFP4. Exact integer sums
// per block, scaled once per block: the scalar reference of the SIMD dots.
float dot_int_blocks_ref(const IntBlockFormat& f, int64_t n, const void* w, const void* act);
// As a QDotFn for the kernel tables.
template <DType T>
float int_blocks_dot_ref(int64_t n, const void* w, const void* act) {
  static const IntBlockFormat* const f = int_block_format(T);
  return dot_int_blocks_ref(*f, n, w, act);
}

// E8M0 exponent e as ggml's GGML_E8M0_TO_FP32_HALF: 2^(e-128) (MXFP4's values
// are stored doubled).
float e8m0_to_f32_half(uint8_t e);
// MXFP4's E2M1 levels, doubled to integers.
extern const int8_t kFp4Values[16];

}  // namespace lmpress
