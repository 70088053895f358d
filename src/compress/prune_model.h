// `lmpress prune`: one-shot pruning of every transformer block's linear
// layers (magnitude, Wanda or SparseGPT; unstructured or N:M), block by block
// on calibration activations that already pass through the pruned earlier
// blocks (as the Wanda and SparseGPT code do), optionally quantized in the
// same pass (SparseGPT jointly; the others prune, then round), written as GGUF.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "compress/calibration.h"
#include "compress/compensate.h"
#include "compress/module_select.h"
#include "compress/owl.h"
#include "compress/rotate.h"
#include "compress/structured_prune.h"
#include "core/dtype.h"
#include "model/model.h"
#include "quant/gptq.h"
#include "sparse/prune.h"

namespace lmpress {

struct PruneOptions {
  PruneMethod method = PruneMethod::Magnitude;
  SparsityPattern pattern;
  CalibrationOptions calib;   // wanda, sparsegpt
  GptqOptions gptq;           // SparseGPT's dampening and lazy batch
  std::optional<DType> quantize;  // block type for the pruned linears
  std::optional<OwlOptions> owl;  // per-block sparsities by outlier ratio (unstructured only)
  bool global = false;            // magnitude, unstructured: one |w| threshold across all blocks' linears
  std::string name;               // general.name
  std::string recipe;             // recorded in the output (ExportOptions::recipe)
  std::optional<RotateSpec> rotate;  // rotate the residual stream first (compress/rotate.h)
  std::optional<CompensateSpec> compensate;  // low-rank compensation of the pruning (and rounding) error
  // The linears pruned (default: all); the others are written as they are.
  ModuleSelector select;
};

struct PrunedTensor {
  std::string name, shape;
  double sparsity = 0;       // exact zeros / elements, after quantization when quantized
  double output_error = -1;  // tr(ΔW H ΔWᵀ) / tr(W H Wᵀ) on calibration inputs; −1 if not measured
  double compensated_error = -1;  // the same with the low-rank compensation added; −1 without one
};

struct PruneReport {
  std::vector<PrunedTensor> tensors;
  int64_t n_params = 0, n_linear = 0, n_zero = 0;  // n_zero: zeros in the pruned linears
  uint64_t bytes_out = 0;
  int64_t calib_tokens = 0;
  // A mixture's expert linears no calibration token was routed to (pruned by magnitude instead).
  std::vector<std::string> uncalibrated;
  double seconds = 0;
  std::vector<double> owl_ratios, layer_sparsity;  // with OWL: per block outlier ratio and target
  MemoryReport memory;
  AdapterReport adapter;  // --compensate's
};

// `lmpress prune`'s options as words (the command line and the C API take the
// same): prune_options() checks them, failing naming the option before any work.
struct PruneRequest {
  std::string method = "magnitude";  // magnitude, wanda, sparsegpt
  double sparsity = -1;              // unstructured fraction, or
  std::string nm;                    // N:M
  std::string quantize;              // block type for the pruned linears, or empty
  CalibrationOptions calib;
  double damp = 0.01;
  bool owl = false, global = false;
  OwlOptions owl_opts;
  std::string name;
  std::string rotate;  // hadamard[:SEED], or empty
  std::string compensate, compensate_out;  // rank=R[,method=eora|svd] and the adapter's path
  std::vector<std::string> targets, ignore;  // module names (core/module_match.h); empty targets: every linear
};
// out_path: the output, beside which the adapter goes by default.
PruneOptions prune_options(const PruneRequest& r, const std::string& out_path);
// Only what every pruning shares (calibration, name, --quantize): structured pruning's.
PruneOptions prune_output_options(const PruneRequest& r);

// Prunes m's blocks one after another, writing each to `out_path` (GGUF) as
// it is finished; m's tensors are the input's again when it returns.
PruneReport prune_model(Model& m, const std::string& out_path, const PruneOptions& o);

// Structured pruning (structured_prune.h) of m, written to `out_path` in the
// source's float types, or with o.quantize's llama.cpp mix (RTN).
StructuredReport prune_model_structured(Model& m, const std::string& out_path, const StructuredOptions& so,
                                        const PruneOptions& o);

}  // namespace lmpress
