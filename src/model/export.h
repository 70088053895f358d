// Writing a loaded model: GGUF (llama.cpp's conventions) or a Hugging Face
// directory (config.json, safetensors, tokenizer files). q/k rows are
// permuted when the target's RoPE pairing differs from the source's.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/dtype.h"
#include "model/model.h"

namespace lmpress {

struct ExportOptions {
  // Type for 2-D weights; nullopt keeps each tensor's type. Norms and biases
  // stay F32. Block types (Q8_0, Q4_0, ...) are rounded to nearest (RTN); a
  // matrix whose rows are not a multiple of the block size falls back to F16.
  std::optional<DType> dtype;
  std::string name;  // general.name
  // The recipe that made the file (lmpress apply): GGUF metadata lmpress.recipe,
  // or recipe.yaml in a Hugging Face directory. Empty: none recorded.
  std::string recipe;
  // Per-tensor target type (overrides dtype when set), e.g. a quantization mix.
  std::function<DType(const Tensor&)> type_of;
  // Quantizer for block types: fills out (rows x row_bytes(dst, cols)) from the
  // tensor's f32 values; default: RTN (quantize_row without importance).
  std::function<void(const Tensor& src, DType dst, const float* f32, uint8_t* out)> quantize;
  std::optional<uint32_t> file_type;  // general.file_type (llama_ftype) to record
  // Values of the tensors without bytes (data null), made when each is
  // written: models generated while they are written (make-model), weights
  // cut out of the input's as they are written (structured pruning).
  std::function<std::vector<float>(const Tensor&)> values;
  // Hugging Face output: the tensors to write in place of a weight (e.g. a
  // GPTQ linear's qweight/qzeros/scales/g_idx, rows already in HF order), or
  // none to write it normally. hf_name: the weight's HF name. Asked when the
  // file's header is made and again when the weight is written: the same
  // names, types and shapes both times; the bytes are produced at the second.
  std::function<std::vector<TensorToWrite>(const Tensor& t, const std::string& hf_name)> hf_replace;
  // Hugging Face output: a JSON object recorded as config.json's
  // quantization_config and as quantize_config.json.
  std::string hf_quantization_config;
};

void write_gguf_model(const Model& m, const std::string& path, const ExportOptions& opt);
void write_hf_model(const Model& m, const std::string& dir, const ExportOptions& opt);

// A model file written while the model is being compressed, so that finished
// blocks need not be kept: opening it checks the output and writes the header
// from the model's tensors and the options' planned types (which the
// compressed tensors must then have); write() writes a tensor as the model
// holds it at that moment, once it is final; commit() writes every tensor not
// written yet, as write_gguf_model / write_hf_model would, and renames the file
// (or directory) into place. Destroyed uncommitted, it leaves nothing behind.
class ModelWriter {
 public:
  static std::unique_ptr<ModelWriter> gguf(const Model& m, const std::string& path, ExportOptions opt);
  static std::unique_ptr<ModelWriter> hf(const Model& m, const std::string& dir, ExportOptions opt);
  ~ModelWriter();
  // Writes the model's tensor `name` (canonical) now; nothing for a tensor the format leaves out (a tied output).
  void write(const std::string& name);
  // Writes every tensor of block `layer`.
  void write_block(int64_t layer);
  // Hugging Face directories with a quantization_config: sets its member `key`
  // to the JSON `value`, for what is known only once the tensors are computed
  // (config.json and quantize_config.json are written by commit).
  void set_quantization_config_member(const std::string& key, const std::string& value);
  void commit();

 private:
  struct Impl;
  explicit ModelWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The heads whose rows RoPE pairs in tensor `name` of m (a q or k
// projection, or anything laid out by their rows), else 0.
int64_t rope_heads(const Model& m, const std::string& name);
// Heads whose rows must be re-paired for RoPE when t is written in `target`
// pairing (q or k of a model stored in the other pairing), else 0.
int64_t rope_heads_to_permute(const Model& m, const Tensor& t, RopeLayout target);

// Reorders rows of a q or k projection (rows = n_heads * head_dim, any row
// width in bytes) between RoPE pairings: Halves (HF) <-> Interleaved (GGUF).
std::vector<uint8_t> permute_rope_rows(const uint8_t* src, int64_t n_heads, int64_t head_dim, uint64_t row_bytes,
                                       RopeLayout from, RopeLayout to);

}  // namespace lmpress
