// `lmpress quantize`: chooses each tensor's type (a llama.cpp-style mix),
// quantizes with RTN, GPTQ or AWQ, and writes GGUF — or, for an int-N group
// format, a GPTQ-layout safetensors directory that GPU engines load.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "compress/calibration.h"
#include "compress/compensate.h"
#include "compress/rotate.h"
#include "model/model.h"
#include "quant/gptq.h"
#include "quant/imatrix.h"
#include "quant/int_checkpoint.h"
#include "quant/int_group.h"
#include "quant/quantize.h"
#include "compress/mix.h"
#include "core/module_match.h"

namespace lmpress {

enum class QuantMethod { RTN, GPTQ, AWQ };

// A per-module format of an int-N checkpoint: a block linear the rule
// matches (canonical weight name, Hugging Face module name) takes `spec`, or
// stays unquantized (F16, in the checkpoint's ignore list) when it has none.
struct IntRule {
  std::string what;  // names the rule in errors: "--tensor-type ffn_down=int8-ch"
  std::function<bool(const std::string& weight, const std::string& module)> matches;
  std::optional<IntGroupSpec> spec;
};

struct QuantizeOptions {
  QuantMethod method = QuantMethod::RTN;
  MixOptions mix;
  std::optional<Imatrix> imatrix;  // importance for the block scale searches
  CalibrationOptions calib;        // GPTQ and AWQ
  GptqOptions gptq;
  // int-N group format for the blocks' linear layers (embeddings and output
  // stay F16); the output is then a Hugging Face directory in GPTQ layout.
  std::optional<IntGroupSpec> int_group;
  IntCheckpoint checkpoint = IntCheckpoint::Gptq;  // the directory's layout for int_group (quant/int_checkpoint.h)
  // Per-module formats: the first rule matching a linear decides; int_group
  // is the rest's. Every rule must match some linear.
  std::vector<IntRule> int_rules;
  // int-N types: the linears quantized (default: all); the others stay F16.
  ModuleSelector select;
  bool clip_search = false;
  // Rotate the residual stream first (QuaRot, compress/rotate.h): the model is
  // the same function with fewer outliers, quantized after.
  std::optional<RotateSpec> rotate;
  // W8A8 (int_group int8-ch, compressed-tensors): written as int-quantized with
  // int8 per-token dynamic input activations; smooth_alpha: SmoothQuant first.
  bool act_int8 = false;
  std::optional<double> smooth_alpha;
  std::optional<CompensateSpec> compensate;  // low-rank error compensation (compress/compensate.h)
  // Choose per-tensor GGUF types by measured sensitivity so that the file has
  // at most this many bits per weight (needs calib).
  std::optional<double> target_bpw;  // RTN: per block/group clipping ratio with the least (importance-weighted) error
  bool allow_requantize = false;
  // Tensors already encoded (quantization-aware training's learned scales,
  // train/qat.h): blocks of the type the plan gives the tensor, or int-N
  // tensors of its int-N format; written as they are instead of rounded
  // (RTN only).
  std::map<std::string, EncodedTensor> encoded;
  std::map<std::string, IntGroupTensor> encoded_int;
  std::string name;  // general.name
  std::string recipe;  // recorded in the output (ExportOptions::recipe)
};

struct TensorReport {
  std::string name, shape;
  std::string type;  // dtype name or int-N spec name
  double weight_error = 0;  // ‖Wq − W‖ / ‖W‖
  double output_error = -1;  // tr(ΔW H ΔWᵀ) / tr(W H Wᵀ) on calibration inputs; −1 if not measured
  double compensated_error = -1;  // the same with the low-rank compensation added; −1 without one
};

struct QuantizeReport {
  std::vector<TensorReport> tensors;
  int64_t n_params = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
  int64_t calib_tokens = 0;
  // Calibrated methods on a mixture of experts: the experts' linears no
  // calibration token was routed to (quantized by RTN instead).
  std::vector<std::string> uncalibrated;
  // With an imatrix, a mixture's expert tensors and those its tokens reached
  // (the others take importance 1, as in llama-quantize).
  int64_t expert_tensors = 0, expert_tensors_with_data = 0;
  double seconds = 0;
  MemoryReport memory;
  AdapterReport adapter;  // --compensate's
};

// Quantizes m (modified in place for the calibrated methods) and writes OUT.
QuantizeReport quantize_model(Model& m, const std::string& out_path, const QuantizeOptions& o);

// `lmpress quantize`'s options as words (the command line and the C API take
// the same): quantize_options() checks them and makes QuantizeOptions, failing
// naming the option before any work is done.
struct QuantizeRequest {
  std::string type;          // a preset (q4_k_m) or an int-N group format (int4-g128)
  std::string method = "rtn";  // rtn, gptq, awq
  std::string format = "gptq";  // int-N types: the checkpoint layout (gptq, awq, compressed-tensors)
  std::string imatrix;       // llama.cpp imatrix GGUF
  std::string rotate;        // hadamard[:SEED], or empty
  std::string scheme;        // "w8a8", or empty (weight-only)
  std::string compensate;    // rank=R[,method=eora|svd], or empty
  std::string compensate_out;  // the adapter's path (default: beside the output)
  double smooth = -1;        // SmoothQuant's α before a w8a8 scheme; < 0: none
  std::string output_type, embd_type, name;
  std::vector<std::string> expert_types;  // hot:F=TYPE / cold:F=TYPE (needs imatrix)
  std::vector<std::string> tensor_types;  // PATTERN=TYPE overrides (int-N types: an int-N type or f16 per linear)
  std::vector<std::string> targets, ignore;  // int-N types: the linears quantized (module names, core/module_match.h)
  CalibrationOptions calib;
  double damp = 0.01, target_bpw = 0;
  bool act_order = false, clip_search = false, pure = false, keep_output = false, allow_requantize = false;
};
QuantizeOptions quantize_options(const QuantizeRequest& r, const std::string& out_path);
// Whether r writes a Hugging Face checkpoint directory (an int-N type or a scheme) rather than GGUF.
bool writes_checkpoint_dir(const QuantizeRequest& r);
// keep_output: output.weight (the tied embedding when there is none) stays in m's type.
void keep_output_type(QuantizeOptions& q, const QuantizeRequest& r, const Model& m);


}  // namespace lmpress
