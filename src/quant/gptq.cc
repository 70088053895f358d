#include "quant/gptq.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "core/error.h"
#include "quant/block_grid.h"
#include "quant/lmp2.h"
#include "quant/quantize.h"

namespace lmpress {
namespace {

// Upper Cholesky factor U of (H + damp·mean(diag H)·I)⁻¹ = UᵀU. Retries with
// more dampening if H is not positive definite. fill(A) writes H (n x n) into
// A, once per attempt, so that only one double copy of H is ever held.
std::vector<float> inverse_hessian_cholesky(const std::function<void(std::vector<double>&)>& fill, int64_t n,
                                            double damp) {
  std::vector<double> A(size_t(n * n));
  fill(A);
  double mean_diag = 0;
  for (int64_t i = 0; i < n; i++) mean_diag += A[size_t(i * n + i)];
  mean_diag = std::max(mean_diag / double(n), 1e-12);
  for (int attempt = 0; attempt < 6; attempt++, damp *= 10) {
    if (attempt > 0) fill(A);
    for (int64_t i = 0; i < n; i++) A[size_t(i * n + i)] += damp * mean_diag;
    // A is symmetric, so the column-major routines read it as it is and do
    // exactly what the row-major ones would do on their transposed n x n
    // copy, without that copy; each result is left in the mirrored triangle.
    if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', int(n), A.data(), int(n)) != 0) continue;
    if (LAPACKE_dpotri(LAPACK_COL_MAJOR, 'L', int(n), A.data(), int(n)) != 0) continue;
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = i + 1; j < n; j++) A[size_t(j * n + i)] = A[size_t(i * n + j)];
    if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', int(n), A.data(), int(n)) != 0) continue;
    std::vector<float> U(size_t(n * n), 0.0f);
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = i; j < n; j++) U[size_t(i * n + j)] = float(A[size_t(j * n + i)]);
    return U;
  }
  fail("GPTQ: the Hessian is not positive definite even with dampening (degenerate calibration data?)");
}

}  // namespace

void accumulate_hessian(std::vector<float>& H, const float* x, int64_t n, int64_t cols) {
  if (H.empty()) H.assign(size_t(cols * cols), 0.0f);
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, int(cols), int(n), 1.0f, x, int(cols), 1.0f, H.data(), int(cols));
}

void symmetrize_hessian(std::vector<float>& H, int64_t cols) {
  for (int64_t i = 0; i < cols; i++)
    for (int64_t j = i + 1; j < cols; j++) H[size_t(j * cols + i)] = H[size_t(i * cols + j)];
}

namespace {

// tr(A H Aᵀ) for a rows x cols matrix A.
double quadratic_trace(const float* A, int64_t rows, int64_t cols, const std::vector<float>& H) {
  std::vector<float> AH(size_t(rows * cols));
  cblas_ssymm(CblasRowMajor, CblasRight, CblasUpper, int(rows), int(cols), 1.0f, H.data(), int(cols), A, int(cols),
              0.0f, AH.data(), int(cols));
  double s = 0;
  for (size_t i = 0; i < AH.size(); i++) s += double(A[i]) * AH[i];
  return s;
}

}  // namespace

double output_error(const float* W, const float* Wq, int64_t rows, int64_t cols, const std::vector<float>& H) {
  std::vector<float> D(size_t(rows * cols));
  for (size_t i = 0; i < D.size(); i++) D[i] = Wq[i] - W[i];
  return quadratic_trace(D.data(), rows, cols, H);
}

double relative_output_error(const float* W, const float* Wq, int64_t rows, int64_t cols, const std::vector<float>& H) {
  const double den = quadratic_trace(W, rows, cols, H);
  return den > 0 ? output_error(W, Wq, rows, cols, H) / den : 0.0;
}

GptqResult gptq_core(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H,
                     const GptqGridFormat& f, const GptqOptions& o, const SparsityPattern* prune) {
  const int64_t G = f.group;
  if (G <= 0 || cols % G != 0) fail("GPTQ: {} columns are not a multiple of the group of {}", cols, G);
  if (int64_t(H.size()) != cols * cols) fail("GPTQ: Hessian size does not match {} columns", cols);
  const int64_t B = std::max<int64_t>(o.block, G) / G * G;
  const bool grid = f.n_levels > 0;
  const int64_t vd = f.vector_dim;
  if (vd > 0 && (grid || prune || o.act_order || G % vd != 0))
    fail("internal: GPTQ's vector rounding takes no grid, pruning or act-order, and whole vectors per group");
  if (prune && o.act_order) fail("SparseGPT: act-order is not supported with pruning");
  if (prune && prune->is_nm() && (cols % prune->m != 0 || B % prune->m != 0))
    fail("SparseGPT: {} columns do not split into groups of {} ({} pattern)", cols, prune->m, prune->name());

  // The Hessian's diagonal in double; inputs that never fire (0) get 1: any
  // value is exact for them, so they are quantized as zero.
  std::vector<double> diag(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; c++) {
    diag[size_t(c)] = H[size_t(c * cols + c)];
    if (diag[size_t(c)] == 0) diag[size_t(c)] = 1;
  }
  std::vector<int64_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), 0);
  if (o.act_order)
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return diag[size_t(a)] > diag[size_t(b)]; });
  // The inverse of the Hessian in processing order, made from H directly: one
  // n x n double buffer at a time, the largest memory GPTQ holds.
  std::vector<float> U = inverse_hessian_cholesky(
      [&](std::vector<double>& A) {
        for (int64_t i = 0; i < cols; i++) {
          const int64_t pi = perm[size_t(i)];
          for (int64_t j = 0; j < cols; j++) A[size_t(i * cols + j)] = H[size_t(pi * cols + perm[size_t(j)])];
          A[size_t(i * cols + i)] = diag[size_t(pi)];
        }
      },
      cols, o.damp);

  // Column-major working copy (column i contiguous over rows).
  std::vector<float> Wc(size_t(rows * cols));
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) Wc[size_t(c * rows + r)] = W[r * cols + c];
  for (int64_t c = 0; c < cols; c++)
    if (H[size_t(c * cols + c)] == 0) std::fill(Wc.begin() + c * rows, Wc.begin() + (c + 1) * rows, 0.0f);

  // The grid scale/offset per weight (column-major, original column order),
  // or per group and row with uniform groups.
  const size_t grid_params = !grid ? 0 : f.uniform_groups ? size_t(cols / G * rows) : size_t(rows * cols);
  std::vector<float> S(grid_params), O(grid_params);
  GptqResult res;
  res.g_idx.resize(size_t(cols));
  std::vector<float> gx(size_t(G * rows)), gs(size_t(G * rows)), go(size_t(G * rows));
  // Chooses group j's grids from the current values `src` (G columns of rows).
  std::vector<uint8_t> Mk(prune ? size_t(rows * cols) : 0);  // pruning mask, processing order
  std::vector<float> masked_src(prune && grid ? size_t(G * rows) : 0);
  auto choose = [&](int64_t j, const int64_t* members, const float* src) {
    if (!grid) return;
    if (prune) {  // the grid is chosen for the weights that stay (pruning implies no act-order: k == c)
      for (int64_t e = 0; e < G; e++)
        for (int64_t r = 0; r < rows; r++)
          masked_src[size_t(e * rows + r)] = Mk[size_t(members[e] * rows + r)] ? 0.0f : src[e * rows + r];
      src = masked_src.data();
    }
    f.choose(j, members, src, gs.data(), go.data());
    for (int64_t e = 0; e < G; e++) {
      const int64_t c = members[e];
      res.g_idx[size_t(c)] = int32_t(j);
      if (f.uniform_groups) continue;
      std::copy_n(gs.begin() + e * rows, rows, S.begin() + c * rows);
      std::copy_n(go.begin() + e * rows, rows, O.begin() + c * rows);
    }
    if (f.uniform_groups) {
      std::copy_n(gs.begin(), rows, S.begin() + j * rows);
      std::copy_n(go.begin(), rows, O.begin() + j * rows);
    }
  };
  std::vector<int64_t> static_members(static_cast<size_t>(G));
  auto static_group = [&](int64_t j) {
    std::iota(static_members.begin(), static_members.end(), j * G);
    return static_members.data();
  };
  // Static groups (c / G) under act-order: chosen up front from the unquantized weights.
  if (o.act_order && !f.ordered_groups)
    for (int64_t j = 0; j < cols / G; j++) choose(j, static_group(j), Wc.data() + j * G * rows);

  // Wp: the working columns in processing order.
  std::vector<float> Wp;
  if (o.act_order) {
    Wp.resize(size_t(rows * cols));
    for (int64_t k = 0; k < cols; k++)
      std::copy_n(Wc.begin() + perm[size_t(k)] * rows, rows, Wp.begin() + k * rows);
    std::vector<float>().swap(Wc);
  } else {
    Wp = std::move(Wc);  // processing order is column order
  }
  std::vector<uint8_t> L(grid ? size_t(rows * cols) : 0);  // levels, column-major, original order
  // Values without a grid, column-major: in Wp itself when columns are
  // processed in order (a column is not read again once it is processed).
  const bool values_in_wp = !grid && !o.act_order;
  std::vector<float> VQ(size_t(vd * rows));  // the current vector's rounded values
  std::vector<float> Q(!grid && !values_in_wp ? size_t(rows * cols) : 0);
  std::vector<float> Err(size_t(B * rows));
  // SparseGPT's saliency of weight (r, k) now: w² / [U]ₖₖ².
  auto saliency = [&](int64_t k, int64_t r) {
    const double w = Wp[size_t(k * rows + r)], u = U[size_t(k * cols + k)];
    return w * w / (u * u);
  };
  std::vector<std::pair<double, int64_t>> cand;
  for (int64_t b1 = 0; b1 < cols; b1 += B) {
    const int64_t b2 = std::min(b1 + B, cols);
    if (prune && !prune->is_nm()) {  // mask the batch's least salient weights, an exact count
      cand.clear();
      for (int64_t k = b1; k < b2; k++)
        for (int64_t r = 0; r < rows; r++) cand.push_back({saliency(k, r), k * rows + r});
      const int64_t z = zeros_for(prune->sparsity, b1 * rows, (b2 - b1) * rows);
      if (z > 0) {
        std::nth_element(cand.begin(), cand.begin() + (z - 1), cand.end());
        for (int64_t i = 0; i < z; i++) Mk[size_t(cand[size_t(i)].second)] = 1;
      }
    }
    for (int64_t k = b1; k < b2; k++) {
      if (prune && prune->is_nm() && k % prune->m == 0) {  // per row, the least salient of the next M columns
        const int64_t M = prune->m, z = prune->zeros_per_group();
#pragma omp parallel for schedule(static) if (rows >= 1024)
        for (int64_t r = 0; r < rows; r++) {
          std::pair<double, int64_t> sc[64];
          for (int64_t e = 0; e < M; e++) sc[e] = {saliency(k + e, r), k + e};
          std::partial_sort(sc, sc + z, sc + M);
          for (int64_t e = 0; e < z; e++) Mk[size_t(sc[e].second * rows + r)] = 1;
        }
      }
      // A group's columns all lie inside this lazy batch (B is a multiple of G),
      // so at its first column they have received every earlier column's update.
      if (k % G == 0) {
        if (f.ordered_groups)
          choose(k / G, perm.data() + k, Wp.data() + k * rows);
        else if (!o.act_order)
          choose(k / G, static_group(k / G), Wp.data() + k * rows);
      }
      if (vd > 0 && k % vd == 0) f.round_vectors(k, Wp.data() + k * rows, VQ.data());
      const float* vq = vd > 0 ? VQ.data() + (k % vd) * rows : nullptr;
      const int64_t c = perm[size_t(k)];
      const float d = U[size_t(k * cols + k)];
      float* w = Wp.data() + k * rows;
      float* err = Err.data() + (k - b1) * rows;
      const int64_t at = f.uniform_groups ? int64_t(res.g_idx[size_t(c)]) : c;
      const float* s = grid ? S.data() + at * rows : nullptr;
      const float* off = grid ? O.data() + at * rows : nullptr;
      uint8_t* lv = grid ? L.data() + c * rows : nullptr;
      const uint8_t* mk = prune ? Mk.data() + k * rows : nullptr;
      float* qv = grid ? nullptr : values_in_wp ? w : Q.data() + c * rows;
#pragma omp parallel for schedule(static) if (rows >= 1024)
      for (int64_t r = 0; r < rows; r++) {
        const bool cut = mk && mk[r];
        const float v = w[r];
        float q;
        if (grid) {
          const int level = nearest_grid_level(s[r], off[r], f.n_levels, f.table, cut ? 0.0f : v);
          lv[r] = uint8_t(level);
          q = grid_value(s[r], off[r], f.table, level);
        } else if (vq) {
          q = vq[r];
        } else {
          q = cut ? 0.0f : v;
        }
        err[r] = (v - q) / d;
        if (qv) qv[r] = q;
      }
      // Spread the error over the rest of this lazy batch.
      for (int64_t j = k + 1; j < b2; j++) {
        const float u = U[size_t(k * cols + j)];
        if (u != 0) cblas_saxpy(int(rows), -u, err, 1, Wp.data() + j * rows, 1);
      }
    }
    // ... and, in one GEMM, over every later column.
    if (b2 < cols)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(cols - b2), int(rows), int(b2 - b1), -1.0f,
                  U.data() + b1 * cols + b2, int(cols), Err.data(), int(rows), 1.0f, Wp.data() + b2 * rows, int(rows));
  }
  // The working copies are done with before the results are laid out.
  std::vector<float>().swap(U);
  std::vector<float>().swap(Err);
  std::vector<float>().swap(S);
  std::vector<float>().swap(O);
  if (!values_in_wp) std::vector<float>().swap(Wp);
  if (vd > 0) return res;
  if (grid) {
    res.levels.resize(size_t(rows * cols));
    for (int64_t c = 0; c < cols; c++)
      for (int64_t r = 0; r < rows; r++) res.levels[size_t(r * cols + c)] = L[size_t(c * rows + r)];
  } else {
    const std::vector<float>& Qc = values_in_wp ? Wp : Q;
    res.values.resize(size_t(rows * cols));
    for (int64_t c = 0; c < cols; c++)
      for (int64_t r = 0; r < rows; r++) res.values[size_t(r * cols + c)] = Qc[size_t(c * rows + r)];
  }
  if (prune) {  // no act-order: processing order is column order
    res.pruned.resize(size_t(rows * cols));
    for (int64_t c = 0; c < cols; c++)
      for (int64_t r = 0; r < rows; r++) res.pruned[size_t(r * cols + c)] = Mk[size_t(c * rows + r)];
  }
  return res;
}

bool gptq_can_target(DType t) { return has_block_grid(t) || t == DType::LMP2; }

bool zero_is_level(DType t) {
  return t == DType::Q4_0 || t == DType::Q5_0 || t == DType::Q8_0 || t == DType::Q3_K || t == DType::Q6_K;
}

void gptq_quantize(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H, DType t,
                   const float* importance, const GptqOptions& o, uint8_t* out, const SparsityPattern* prune) {
  if (t == DType::LMP2 && !prune) return gptq_quantize_lmp2(W, rows, cols, H, o, out);
  if (!has_quantizer(t)) fail("GPTQ: no quantizer for {}", dtype_name(t));
  if (prune && !zero_is_level(t))
    fail("SparseGPT: {} has no exact zero in every block; prune with q4_0, q5_0, q8_0, q3_k or q6_k", dtype_name(t));
  const int64_t G = dtype_info(t).block_elems;
  if (cols % G != 0) fail("GPTQ: {} columns are not a multiple of the {} block of {}", cols, G, dtype_name(t));
  if (int64_t(H.size()) != cols * cols) fail("GPTQ: Hessian size does not match {} columns", cols);
  const uint64_t rb = row_bytes(t, uint64_t(cols));
  const uint64_t bb = dtype_info(t).block_bytes;
  std::vector<float> imp(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; c++) imp[size_t(c)] = importance ? importance[c] : H[size_t(c * cols + c)];
  BlockGrid proto;
  {
    std::vector<uint8_t> zero(bb, 0);
    block_grid(t, zero.data(), proto);
  }
  GptqGridFormat f;
  f.group = G;
  f.n_levels = proto.n_levels;
  f.table = proto.table;
  // A block's scales come from the block type's own search on the block's
  // current values; they are written into `out` now, the levels at the end.
  f.choose = [&](int64_t b, const int64_t*, const float* x, float* scale, float* offset) {
#pragma omp parallel for schedule(static) if (rows * G >= 16384)
    for (int64_t r = 0; r < rows; r++) {
      float v[256];
      for (int64_t e = 0; e < G; e++) v[e] = x[e * rows + r];
      uint8_t* blk = out + uint64_t(r) * rb + uint64_t(b) * bb;
      quantize_row(t, v, G, blk, imp.data() + b * G);
      BlockGrid g;
      block_grid(t, blk, g);
      for (int64_t e = 0; e < G; e++) {
        scale[e * rows + r] = g.scale[e];
        offset[e * rows + r] = g.offset[e];
      }
    }
  };
  const GptqResult res = gptq_core(W, rows, cols, H, f, o, prune);
  // Pack the chosen levels into the blocks, whose scale fields are already set.
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++)
    for (int64_t b = 0; b < cols / G; b++)
      pack_levels(t, res.levels.data() + r * cols + b * G, out + uint64_t(r) * rb + uint64_t(b) * bb);
}

IntGroupTensor gptq_quantize_int(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H,
                                 const IntGroupSpec& spec, const GptqOptions& o) {
  IntGroupTensor t(spec, rows, cols);
  const int64_t G = spec.group_size(cols);
  IntGroupRtnOptions search;
  search.clip_search = o.int_clip_search;
  GptqGridFormat f;
  f.group = G;
  f.n_levels = spec.max_level() + 1;
  f.ordered_groups = true;  // with act-order, g_idx follows the processing order (AutoGPTQ's desc_act)
  f.uniform_groups = true;
  f.choose = [&](int64_t j, const int64_t* members, const float* x, float* scale, float* offset) {
    // Clipping weighted like the block formats' scale searches: by diag H.
    std::vector<float> imp(static_cast<size_t>(G));
    for (int64_t e = 0; e < G; e++) imp[size_t(e)] = H[size_t(members[e] * cols + members[e])];
#pragma omp parallel for schedule(static) if (rows * G >= 16384)
    for (int64_t r = 0; r < rows; r++) {
      std::vector<float> v(static_cast<size_t>(G));
      for (int64_t e = 0; e < G; e++) v[size_t(e)] = x[e * rows + r];
      const GroupGrid g = search_group_grid(spec, v.data(), G, imp.data(), search);
      t.scale[size_t(r * t.n_groups + j)] = g.scale;
      t.zero[size_t(r * t.n_groups + j)] = uint16_t(g.zero);
      for (int64_t e = 0; e < G; e++) {
        scale[e * rows + r] = g.scale;
        offset[e * rows + r] = -g.scale * float(g.zero);
      }
    }
  };
  std::vector<uint8_t>().swap(t.q);  // the levels come from gptq_core
  GptqResult res = gptq_core(W, rows, cols, H, f, o);
  t.q = std::move(res.levels);
  t.g_idx = std::move(res.g_idx);
  t.spec.act_order = o.act_order;
  return t;
}

}  // namespace lmpress
