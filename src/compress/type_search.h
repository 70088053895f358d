// `--target-bpw`: per-tensor types that fit a size with the least measured
// damage. A tensor's sensitivity to a type is the energy its quantization
// adds to the tensor's output on the calibration data, Σ_tokens ‖(Q(W) − W) x‖²
// (x: the tensor's input; a one-hot token for the embedding), measured for
// every candidate type in one pass over the unquantized model. Then the
// assignment with the least total error that fits (a multiple-choice knapsack,
// solved by dynamic programming).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compress/calibration.h"
#include "core/dtype.h"
#include "model/model.h"
#include "quant/imatrix.h"

namespace lmpress {

struct TypeCost {
  DType type;
  uint64_t bytes;
  double error;
};

struct TensorCosts {
  std::string name;
  std::vector<TypeCost> options;  // at least one
  // The tensors that take this entry's type, when not `name` alone: a mixture's experts of one stack
  // (llama.cpp's ffn_*_exps hold one type), their costs summed.
  std::vector<std::string> members;
};

// The assignment of one option per tensor with the least summed error whose
// summed bytes fit the budget; fails when even the smallest types exceed it.
std::map<std::string, DType> choose_types_for_budget(const std::vector<TensorCosts>& tensors, uint64_t budget);

// Fails, before any calibration, for a target the candidate types cannot
// reach (below the smallest types' size, or at or above f16 everywhere).
void check_target_bpw(const Model& m, double bpw, const std::map<std::string, DType>& base);

// The types tried: k-quants, legacy blocks, IQ4_NL and F16 (those whose block
// fits a tensor's rows).
const std::vector<DType>& target_bpw_candidates();

// Measures every quantizable tensor's cost per candidate type on calibration
// data, rounding as the final quantizer's block scale search will: with the
// imatrix entry if given, else (activation_importance) the measured
// activations' mean squares, else unweighted.
std::vector<TensorCosts> measure_type_costs(const Model& m, const CalibrationOptions& calib, const Imatrix* imatrix,
                                            bool activation_importance);

// `base` with the measured tensors' types chosen so that the file has at most
// bpw bits per weight (all tensors counted, the others in their `base` type).
std::map<std::string, DType> plan_for_target_bpw(const Model& m, double bpw, const std::vector<TensorCosts>& costs,
                                                 std::map<std::string, DType> base);

}  // namespace lmpress
