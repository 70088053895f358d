// Repacking weights at load into layouts with faster decode kernels. Sparse
// ones skip the zeros: 2:4 patterns into F16_2OF4 or Q8_0_2OF4(_X8), other F16
// matrices sparse enough to pay into F16_BITMAP. Dense matrices of the types
// with an interleaved layout interleave 8 rows (kernels/interleaved.h: Q4_0_X8,
// Q4_1_X8, Q5_0_X8, Q5_1_X8, Q8_0_X8, Q4_K_X8, IQ4_NL_X8, MXFP4_X8). Lossless;
// files on disk keep the plain types.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"

namespace lmpress {

// Largest share of nonzero weights at which the bitmap layout decodes faster
// than dense F16 (bench/sparse-speed.sh measures both sides of it).
constexpr double kBitmapMaxDensity = 0.5;

struct SparseRepack {
  int64_t n_2of4 = 0;    // matrices repacked into F16_2OF4 or Q8_0_2OF4(_X8)
  int64_t n_bitmap = 0;  // into F16_BITMAP
  int64_t total() const { return n_2of4 + n_bitmap; }
};

// Repacks the blocks' F16 and Q8_0 weight matrices that are 2:4-sparse (F16:
// columns a multiple of 32), and F16 ones at most kBitmapMaxDensity dense
// (columns a multiple of 8).
SparseRepack repack_sparse(Model& m);

// Repacks the matrices of those types whose rows are a multiple of 8 into
// their interleaved layouts (the blocks' weights and the output matrix; the
// token embeddings only when tied to the output). Returns
// how many: none off x86-64 (kernels/interleaved.h, interleaved_repack_for).
int64_t repack_interleaved(Model& m);

// W8A8 models (cfg.act_int8): repacks the blocks' F32 matrices that hold int8
// rows times a scale each (kernels/i8x8.h, int8_row_scales), rows a multiple
// of 8 and columns of 32, into I8_X8, whose prompt kernels are int8 × int8
// with int32 sums over whole rows. Others (a LoRA merged into a matrix, say)
// stay F32. Returns how many: none off x86-64 or without act_int8.
int64_t repack_int8_rows(Model& m);

// A row-interleaved matrix (is_row_interleaved) back in its file type's blocks
// (file_type), bit for bit: the load-time repack undone, for export.
std::vector<uint8_t> unpack_interleaved(const Tensor& t);

// Both, as every command that runs a model applies them at load.
struct InferenceRepack {
  SparseRepack sparse;
  int64_t interleaved = 0;
  int64_t int8_rows = 0;
};
InferenceRepack repack_for_inference(Model& m);

// load_model, LoRA adapters merged (--lora FILE[:SCALE], model/lora.h), then
// repack_for_inference: how every command that runs a model loads it.
std::unique_ptr<Model> load_for_inference(const std::string& path, const std::string& tokenizer_path = "",
                                          const std::vector<std::string>& loras = {});

}  // namespace lmpress
