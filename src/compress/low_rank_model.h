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

#include "compress/calibration.h"
#include "core/dtype.h"
#include "model/model.h"

namespace lmpress {

enum class LowRankMethod { Svd, Asvd, SvdLlm };

struct LowRankOptions {
  LowRankMethod method = LowRankMethod::SvdLlm;
  double ratio = 0;   // parameter reduction of each linear in (0, 1), or
  int64_t rank = 0;   // one rank for every linear
  double alpha = 0.5;  // ASVD's exponent
  DType factor_type = DType::F16;
  CalibrationOptions calib;
  std::string name;
};

// "svd", "asvd", "svd-llm".
LowRankMethod parse_low_rank_method(const std::string& s);
const char* low_rank_method_name(LowRankMethod m);
// The rank each linear gets: rank, or the largest r with r·(out + in) ≤ (1 − ratio)·out·in
// (at least 1). Fails naming the linear when a rank does not make it smaller.
int64_t low_rank_for(const LowRankOptions& o, const std::string& name, int64_t out, int64_t in);

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

}  // namespace lmpress
