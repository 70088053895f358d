// Low-rank error compensation (`--compensate rank=R` on quantize and prune):
// after a block linear W is compressed to C(W), the rank-R B·A closest to
// W − C(W) in the output norm of its calibration inputs (EoRA; `svd`: the
// plain truncated SVD, LoRC; quant/low_rank.h) is kept as a LoRA adapter
// (alpha = R): for a GGUF output llama.cpp's GGUF adapter (F16), so that
// `-m OUT --lora ADAPTER` runs C(W) + B·A; for an int-N checkpoint a PEFT
// directory. The next blocks are calibrated on the compensated block's outputs.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/lora.h"
#include "model/model.h"

namespace lmpress {

struct CompensateSpec {
  int64_t rank = 0;
  bool weighted = true;  // EoRA (calibration-weighted); false: plain SVD
  std::string adapter_path;
  bool peft = false;  // a PEFT directory rather than a GGUF file
};
// "rank=R[,method=eora|svd]"; the adapter goes to adapter_out, or beside
// out_path when that is empty: OUT.gguf -> OUT.eora.gguf, a checkpoint
// directory OUT -> OUT-eora (PEFT, when peft). `option` names the flag in errors.
CompensateSpec parse_compensate_spec(const std::string& spec, const std::string& out_path, const std::string& adapter_out,
                                     bool peft);

// What was written, for the commands' reports.
struct AdapterReport {
  std::string path;
  int64_t rank = 0;
  uint64_t bytes = 0;
};

// Refuses, before any work, a model or rank the compensation cannot serve.
void check_compensation(const Model& m, const CompensateSpec& c);

class Compensator {
 public:
  explicit Compensator(const CompensateSpec& s) : spec_(s) {}
  // W: the original weights; approx: what the output file holds for them.
  // Fits the correction (A and B rounded to F16, as the adapter stores them),
  // keeps approx + B·A for the next blocks' calibration, and returns
  // tr(E H Eᵀ) / tr(W H Wᵀ) for E = W − approx − B·A.
  double add(const std::string& name, const std::vector<float>& W, std::vector<float> approx, int64_t rows,
             int64_t cols, const std::vector<float>& H);
  // Puts the compensated values of the linears added since the last call in
  // m (as F32; m.bind() is the caller's) and returns the tensors they replace,
  // for restore_block (compress/calibration.h).
  std::vector<Tensor> swap_in(Model& m);
  // Writes the adapter for base model m.
  AdapterReport write(const Model& m);

 private:
  CompensateSpec spec_;
  LoraAdapter adapter_;
  std::map<std::string, std::vector<float>> pending_;
};

}  // namespace lmpress
