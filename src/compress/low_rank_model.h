// Low-rank compression (`lmpress lowrank`): every block linear W [out, in]
// replaced by factors B [out, r] · A [r, in] (core/low_rank_tensor.h), which
// lmpress runs as two matmuls, each factor in any weight type.
//   svd      the plain truncated SVD of W (no calibration);
//   asvd     ASVD: SVD of W·S, S = diag(mean|x_j|^α) of the calibration
//            inputs, A then divided by S (channels with large inputs kept better);
//   svd-llm  SVD-LLM's truncation-aware whitening: the rank-r B·A minimizing
//            ‖(W − B·A)·Xᵀ‖ given H = XᵀX (quant/low_rank.h), so each dropped
//            singular value is exactly the output loss it costs.
// The calibrated methods run block by block as GPTQ does: a block's inputs
// come from the blocks before it, factorized.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compress/calibration.h"
#include "core/module_match.h"
#include "core/dtype.h"
#include "model/model.h"

namespace lmpress {

enum class LowRankMethod { Svd, Asvd, SvdLlm };

struct LowRankOptions {
  LowRankMethod method = LowRankMethod::SvdLlm;
  double ratio = 0;   // parameter reduction of each linear in (0, 1), or
  int64_t rank = 0;   // one rank for every linear
  double alpha = 0.5;  // ASVD's exponent
  // With ratio: the linears' parameters together lose `ratio`, each linear's
  // rank chosen by its spectrum (allocate_ranks) instead of each losing `ratio`.
  bool global = false;
  DType factor_type = DType::F16;
  CalibrationOptions calib;
  std::string name;
  std::string recipe;  // recorded in the output (ExportOptions::recipe)
  ModuleSelector select;  // the linears factorized (default: all); the others are written as they are
};

// "svd", "asvd", "svd-llm".
LowRankMethod parse_low_rank_method(const std::string& s);
const char* low_rank_method_name(LowRankMethod m);
// The rank each linear gets: rank, or the largest r with r·(out + in) ≤ (1 − ratio)·out·in
// (at least 1), rounded down to a multiple of low_rank_unit(factor_type) when
// it is at least one. Fails naming the linear when a rank does not make it smaller.
int64_t low_rank_for(const LowRankOptions& o, const std::string& name, int64_t out, int64_t in);
// The block of a quantized factor type (32 for Q8_0, 256 for the k-quants), 1
// for float types: B [out, r]'s rows fill whole blocks when r is a multiple of
// it (else the writer stores B as F16).
int64_t low_rank_unit(DType factor_type);

// Ranks for linears with the given singular values (each its method's
// problem's, largest first) and shapes under a budget of factor parameters:
// greedily, one rank at a time, where it removes the largest share of its
// linear's error Σσ² per parameter (out + in) — optimal for the sum of
// relative errors, as each linear's gains only fall. Every linear gets at
// least 1 and stays below min(out, in) and smaller than dense. With unit > 1
// the ranks grow from 1 to unit, then unit at a time (each step priced whole);
// a linear with no room for a rank of unit steps by 1.
std::vector<int64_t> allocate_ranks(const std::vector<std::vector<double>>& sigma,
                                    const std::vector<std::pair<int64_t, int64_t>>& shapes, int64_t budget,
                                    int64_t unit = 1);

struct LowRankTensor {
  std::string name, shape;
  int64_t rank = 0;
  int64_t params_before = 0, params_after = 0;
  // ‖(W − B·A)Xᵀ‖² / ‖W Xᵀ‖² over the calibration inputs (svd: ‖W − B·A‖²_F / ‖W‖²_F), factors as written.
  double error = 0;
};

struct LowRankReport {
  std::vector<LowRankTensor> tensors;
  int64_t params_total_before = 0, params_total_after = 0;  // the whole model
  int64_t calib_tokens = 0;
  uint64_t bytes_out = 0;
  double seconds = 0;
};

// Factorizes m's block linears and writes the GGUF file out_path (one block
// held factorized at a time). Refuses mixtures of experts, quantized inputs
// and factorized ones.
LowRankReport low_rank_model(Model& m, const std::string& out_path, const LowRankOptions& o);

// `lmpress lowrank`'s options as words (the command line and the C API take
// the same): low_rank_options() checks them, failing naming the option before
// any work.
struct LowRankRequest {
  std::string method = "svd-llm", factor_type = "f16";
  double ratio = -1;  // < 0: not given
  int64_t rank = -1;  // < 0: not given
  bool global = false;
  double alpha = 0.5;
  CalibrationOptions calib;
  std::string name;
  std::vector<std::string> targets, ignore;
};
LowRankOptions low_rank_options(const LowRankRequest& r);
// The report as `lowrank --json` prints it.
nlohmann::ordered_json low_rank_report_json(const LowRankReport& r, const LowRankOptions& o);

}  // namespace lmpress
