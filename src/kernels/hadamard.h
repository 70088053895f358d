// The fast Walsh–Hadamard transform: multiplication by the orthonormal
// Hadamard matrix of Sylvester's construction (H₁ = [1], H₂ₙ = [[Hₙ, Hₙ],
// [Hₙ, −Hₙ]] / √2), in n·log₂n additions instead of n² multiplications. H is
// symmetric and its own inverse, so one function rotates and rotates back.
#pragma once
#include <cstdint>
#include <vector>

namespace lmpress {

// Each of the n / block consecutive blocks of x (block a power of two
// dividing n) replaced by H·block.
void hadamard(float* x, int64_t n, int64_t block);

// A ±1 Hadamard matrix of order m (H·Hᵀ = m·I), row-major, by Paley's
// constructions: m = q + 1 for a prime q ≡ 3 (mod 4), m = 2(q + 1) for a prime
// q ≡ 1 (mod 4). Empty when neither applies, and for orders above 4096.
std::vector<int8_t> paley_hadamard(int64_t m);

// QuaRot's random Hadamard rotation of size n = 2^k·m: the orthogonal
// Q = diag(s)·(H_m ⊗ H_{2^k}) / √n, with random signs s drawn from `seed`
// and H_m from paley_hadamard (m = 1 when n is a power of two). Model widths
// such as 288 = 36·8, 896 = 28·32, 3072 = 12·256 or 5120 = 20·256 have one;
// a size with none is refused by name.
class HadamardRotation {
 public:
  HadamardRotation(int64_t n, uint64_t seed);
  static bool supported(int64_t n);
  int64_t size() const { return n_; }
  int64_t order() const { return m_; }  // m: the Paley factor's order (1: none)
  uint64_t seed() const { return seed_; }
  // x (n values, a row vector) <- x·Q.
  void apply(float* x) const;
  // Each of `rows` consecutive rows of n values (threads share the rows).
  void apply_rows(float* x, int64_t rows) const;

 private:
  int64_t n_, m_;
  uint64_t seed_;
  std::vector<int8_t> h_;     // H_m
  std::vector<float> signs_;  // s
};

}  // namespace lmpress
