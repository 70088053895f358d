// lmp2: lmpress's own 2-bit weight format (2.0625 bits per weight, the size of
// IQ2_XXS), after QuIP# (Tseng et al. 2024): incoherence processing and an
// 8-dimensional lattice codebook.
//
// A block is 256 consecutive weights w of a row, stored rotated: v = T·w with
// T = H₂₅₆·diag(s) the orthonormal Sylvester Hadamard transform after fixed
// signs s (kernels/lmp2.cc), which spreads outliers over the block so that
// its values look Gaussian. A block holds an f16 scale d and 32 codes of 16
// bits, each 8 values of v: bits 0–7 pick one of 256 magnitude patterns from
// (ℤ + ½)⁸ — the 227 of squared norm ≤ 10 and 29 of norm 12 (five 3/2, three
// 1/2) — bits 8–14 the signs of values 0–6 (the eighth sign is the one that
// puts the point in E8: an even coordinate sum), bit 15 a shift of +¼ (set)
// or −¼ (clear) on all eight: 2¹⁶ points of E8 + ¼, built as QuIP#'s E8P
// codebook is (its 29 patterns of norm 12 are a hand-picked list; these are
// the first 29 in lexicographic order).
// Value = d · q / 4 with q = 4·point, an odd integer in [−15, 15]. The codes
// are stored as IQ2_XXS stores its groups (so they decode as fast): per 32
// values two uint32, the four 8-bit pattern indices, then the four 7-bit
// sign groups (bits 0–27) and the four shift bits (bits 28–31, where IQ2_XXS
// keeps its 4-bit group scale).
//
// Dot products never rotate the weights back: w·x = (T·w)·(T·x), so the
// activations are rotated (n·log n additions per token) and quantized to
// Q8_K (ActFormat::Q8_K_HADAMARD); the codes decode as IQ2_XXS's do, into an
// int8 dot of LMP2's own. Dequantization applies Tᵀ.
//
// Not a ggml type: files carry it under lmpress's own type id range
// (core/dtype.h, kLmpressFileTypeBase), which llama.cpp refuses by name.
#pragma once
#include <array>
#include <cstdint>

#include "kernels/blocks.h"

namespace lmpress {

constexpr int kLmp2Block = 256;

// The 256 magnitude patterns p, 8 bytes each (byte j: 4·|p_j| ∈ {2, 6, 10,
// 14}, so q = ±byte ± 1), as signed bytes with value 7 negated where the
// pattern needs an odd number of minus signs: signs completed with even
// parity (kIqSigns) then land every point in E8.
extern const std::array<uint64_t, 256> kLmp2Grid;

// The 8 values q (odd integers) of one code.
void lmp2_decode(uint16_t code, int8_t* q);
// Code g (0–31) of a block, and storing it.
uint16_t lmp2_code(const BlockLMP2& b, int g);
void lmp2_set_code(BlockLMP2& b, int g, uint16_t code);

// x ← T·x on each 256-value block of x (n a multiple of 256), and its
// inverse x ← Tᵀ·x.
void lmp2_rotate(float* x, int64_t n);
void lmp2_unrotate(float* x, int64_t n);
// T·x of a row of activations, in this thread's buffer (valid until its next call).
const float* lmp2_rotated(const float* x, int64_t n);

}  // namespace lmpress
