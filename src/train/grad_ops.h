// The training engine's operations, each a forward and its backward, written
// once for T = float (training) and T = double (the gradient checks, which
// compare each backward with finite differences of its own forward).
// Backward functions accumulate (+=) into weight gradients and, where a
// gradient meets another at a residual, into the input gradient as named.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/ops.h"

namespace lmpress::train {

// C[M, N] = alpha · op(A) · op(B) + beta · C, row-major with leading
// dimensions lda, ldb, ldc; op(A) is M×K (A stored K×M when ta), op(B) K×N
// (stored N×K when tb). OpenBLAS (threads of its own outside a parallel
// region, one thread inside one).
template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B, int64_t ldb,
          T beta, T* C, int64_t ldc);

// A linear layer on n rows: y[n, out] = x[n, in] · Wᵀ (W [out, in], as lmpress
// stores it) (+ bias when not null).
template <class T>
void linear_forward(const T* W, const T* bias, const T* x, int64_t n, int64_t in, int64_t out, T* y);
// Its backward: dW += dyᵀ·x, dbias += Σ dy (each when not null), dx = dy·W (dx
// overwritten when !accumulate_dx, else added to; null: not wanted).
template <class T>
void linear_backward(const T* W, const T* x, const T* dy, int64_t n, int64_t in, int64_t out, T* dW, T* dbias, T* dx,
                     bool accumulate_dx);

// y = x / sqrt(mean(x²) + eps) · w per row of D; rstd[n] keeps 1 / sqrt(...).
template <class T>
void rmsnorm_forward(const T* x, const T* w, int64_t n, int64_t D, double eps, T* y, T* rstd);
// dx += ∂/∂x, dw += ∂/∂w of Σ dy·y (dw null: not wanted).
template <class T>
void rmsnorm_backward(const T* x, const T* w, const T* rstd, const T* dy, int64_t n, int64_t D, T* dx, T* dw);

// RoPE on n_heads heads of head_dim at position pos (the first 2·inv_freqs
// pairs of each head), as kernels/ops.h's rope; inverse: the rotation by −θ,
// which is also its backward (a rotation's transpose is its inverse).
template <class T>
void rope_rotate(T* v, int64_t n_heads, int64_t head_dim, int64_t pos, const std::vector<float>& inv_freqs,
                 RopeLayout layout, bool inverse);

// Causal grouped-query attention over one sequence of n tokens, the query
// heads of KV head g (so that callers run the groups side by side): q [n, H·hd],
// k and v [n, KV·hd] (rows packed), out [n, H·hd]; lse [H, n] keeps each
// query's log-sum-exp of scores for the backward. Flash-style: the queries go
// `tile` rows at a time, each tile's scores (tile × the keys up to its last
// row) computed, used and dropped, so no n × n matrix exists.
inline constexpr int64_t kAttentionTile = 128;
template <class T>
void attention_forward(const T* q, const T* k, const T* v, int64_t n, int64_t H, int64_t KV, int64_t hd, int64_t g,
                       double scale, T* lse, T* out, int64_t tile = kAttentionTile);
// Group g's dq rows and dk, dv columns (overwritten) from dout; the KV
// head's gradients gather its query heads'. Each tile's probabilities are
// recomputed from its scores and lse.
template <class T>
void attention_backward(const T* q, const T* k, const T* v, const T* lse, const T* dout, int64_t n, int64_t H,
                        int64_t KV, int64_t hd, int64_t g, double scale, T* dq, T* dk, T* dv,
                        int64_t tile = kAttentionTile);

// SwiGLU: a = silu(g) · u, n values.
template <class T>
void swiglu_forward(const T* g, const T* u, int64_t n, T* a);
// dg, du (overwritten) from da.
template <class T>
void swiglu_backward(const T* g, const T* u, const T* da, int64_t n, T* dg, T* du);

// A mixture of experts' routing on n rows of router logits z[n, E], as
// model/forward.h's route_experts: probs = softmax(z) (z may be probs), the K
// most probable (ties to the lower expert) in chosen[n, K], their weights
// p / Σ chosen p when `norm` (the sum kept in sums[n]), times `scale`.
template <class T>
void route_forward(const T* z, int64_t n, int64_t E, int64_t K, bool norm, double scale, T* probs, int32_t* chosen,
                   T* weights, T* sums);
// dz[n, E] (overwritten) from the weights' gradients dw[n, K], the choice
// held fixed (top-k is not differentiable).
template <class T>
void route_backward(const T* probs, const int32_t* chosen, const T* weights, const T* sums, const T* dw, int64_t n,
                    int64_t E, int64_t K, bool norm, double scale, T* dz);

// The training losses on logits z[rows, V]: cross-entropy against the next
// tokens, forward KL(teacher ‖ student) (distillation), reverse KL(student ‖
// teacher) (MiniLLM), or a·CE + (1 − a)·KL.
struct Loss {
  enum Kind { CE, KL, RKL, Mix } kind = CE;
  double ce_weight = 1.0;  // Mix: a
  bool needs_teacher() const { return kind != CE; }
};
// The teacher's distribution for rows of logits: its full logits [rows, V],
// or the top k of them per row with the log-sum-exp of all (a saved file:
// eval/kld_base.h). With top k, the other tokens form one bin, "the rest"
// (its mass 1 − Σ top k), and the KL losses are those of the two
// distributions coarsened to {top k, rest} — the KL divergence `kld` reports
// against a saved base, and the full loss when k covers the vocabulary. (For
// the reverse KL the rest's teacher mass is floored at 1e-10.)
struct TeacherLogits {
  TeacherLogits(const float* full_logits = nullptr) : full(full_logits) {}
  TeacherLogits(const int32_t* top_ids, const float* top_logits, const float* lse_rows, int64_t top_k)
      : k(top_k), ids(top_ids), top(top_logits), lse(lse_rows) {}
  const float* full = nullptr;
  int64_t k = 0;
  const int32_t* ids = nullptr;  // [rows, k]
  const float* top = nullptr;    // [rows, k]
  const float* lse = nullptr;    // [rows]
  bool empty() const { return !full && !ids; }
  // The same rows from row r on.
  TeacherLogits from_row(int64_t r, int64_t V) const {
    TeacherLogits t = *this;
    if (full) t.full += r * V;
    if (ids) t.ids += r * k, t.top += r * k, t.lse += r;
    return t;
  }
};

// Per row: the loss of its logits, summed over the rows and returned; z is
// overwritten by scale · ∂loss/∂z. targets[rows] (CE, Mix); teacher: the
// teacher's distribution (KL, RKL, Mix; may be empty otherwise). ce_sum (may
// be null) gets the rows' summed cross-entropy whatever the loss, for
// reporting perplexity.
template <class T>
double loss_backward(const Loss& loss, T* z, const int32_t* targets, const TeacherLogits& teacher, int64_t rows,
                     int64_t V, double scale, double* ce_sum);

}  // namespace lmpress::train
