// The fast Walsh–Hadamard transform: multiplication by the orthonormal
// Hadamard matrix of Sylvester's construction (H₁ = [1], H₂ₙ = [[Hₙ, Hₙ],
// [Hₙ, −Hₙ]] / √2), in n·log₂n additions instead of n² multiplications. H is
// symmetric and its own inverse, so one function rotates and rotates back.
#pragma once
#include <cstdint>

namespace lmpress {

// Each of the n / block consecutive blocks of x (block a power of two
// dividing n) replaced by H·block.
void hadamard(float* x, int64_t n, int64_t block);

}  // namespace lmpress
