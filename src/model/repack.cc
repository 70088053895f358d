#include "model/repack.h"

#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/progress.h"
#include "kernels/i8x8.h"
#include "kernels/interleaved.h"
#include "kernels/bitmap.h"
#include "model/lora.h"
#include "kernels/q8_0_2of4x8.h"
#include "kernels/sparse24.h"

namespace lmpress {

namespace {

int64_t count_nonzero_f16(const uint16_t* w, int64_t n) {
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++) k += (w[i] & 0x7fff) != 0;
  return k;
}

void adopt(Tensor& t, DType type, std::shared_ptr<std::vector<uint8_t>> buf) {
  t.dtype = type;
  t.data = buf->data();
  t.nbytes = buf->size();
  t.owner = std::move(buf);
}

}  // namespace

SparseRepack repack_sparse(Model& m) {
  SparseRepack done;
  for (auto& t : m.tensors) {
    if (t.shape.size() != 2 || t.name.rfind("blk.", 0) != 0) continue;
    const int64_t rows = t.rows(), cols = t.cols();
    if (t.dtype == DType::Q8_0) {
      const auto* b = reinterpret_cast<const BlockQ8_0*>(t.data);
      const int64_t nblocks = rows * cols / 32;
      if (!is_2of4_q8_0(b, nblocks)) continue;
      if (rows % 8 == 0) {
        t = repack_q8_0_2of4x8(t);
        done.n_2of4++;
        continue;
      }
      auto buf = std::make_shared<std::vector<uint8_t>>(size_t(nblocks) * sizeof(BlockQ8_0_2of4));
      pack_2of4_q8_0(b, nblocks, reinterpret_cast<BlockQ8_0_2of4*>(buf->data()));
      adopt(t, DType::Q8_0_2OF4, std::move(buf));
      done.n_2of4++;
      continue;
    }
    if (t.dtype != DType::F16) continue;
    const auto* w = reinterpret_cast<const uint16_t*>(t.data);
    if (cols % 32 == 0 && is_2of4_f16(w, rows * cols)) {
      auto buf = std::make_shared<std::vector<uint8_t>>(size_t(rows * cols / 32) * sizeof(BlockF16_2of4));
      auto* out = reinterpret_cast<BlockF16_2of4*>(buf->data());
      for (int64_t r = 0; r < rows; r++) pack_2of4_f16(w + r * cols, cols, out + r * (cols / 32));
      adopt(t, DType::F16_2OF4, std::move(buf));
      done.n_2of4++;
    } else if (cols % 8 == 0 && double(count_nonzero_f16(w, rows * cols)) <= kBitmapMaxDensity * double(rows * cols)) {
      adopt(t, DType::F16_BITMAP, std::make_shared<std::vector<uint8_t>>(pack_bitmap_matrix(w, rows, cols)));
      done.n_bitmap++;
    }
  }
  if (done.total()) m.bind();
  return done;
}

std::vector<uint8_t> unpack_interleaved(const Tensor& t) {
  const InterleavedFormat* f = interleaved_format(t.dtype);
  if (!f) throw Error("unpack_interleaved: " + std::string(dtype_name(t.dtype)) + " is not row-interleaved");
  return f->unpack(t);
}

int64_t repack_interleaved(Model& m) {
  int64_t n = 0;
  Progress progress("repack", m.tensors.size());
  for (size_t i = 0; i < m.tensors.size(); i++) {
    Tensor& t = m.tensors[i];
    progress.update(i);
    const InterleavedFormat* f = interleaved_repack_for(t.dtype);
    if (!f || t.shape.size() != 2 || t.rows() % 8 || t.cols() % f->block_cols) continue;
    if (t.name == "token_embd.weight" && !m.cfg.tied_embeddings) continue;  // only rows looked up: no gain
    Tensor packed = f->repack(t);
    if (packed.dtype == t.dtype) continue;  // does not fit the layout (an MXFP4 scale f16 cannot hold)
    t = std::move(packed);
    n++;
  }
  progress.update(m.tensors.size());
  if (n) m.bind();
  return n;
}

int64_t repack_int8_rows(Model& m) {
#if !defined(__x86_64__)
  return 0;  // the layout's kernels are SIMD on x86-64 only (as interleaved_repack_for)
#endif
  if (!m.cfg.act_int8) return 0;
  int64_t n = 0;
  for (Tensor& t : m.tensors) {
    if (t.dtype != DType::F32 || t.shape.size() != 2 || t.name.rfind("blk.", 0) != 0) continue;
    // Past 65536 columns a row's int32 sums could overflow (|Σ (a + 128)·q| < 255·128·cols).
    if (t.rows() % 8 || t.cols() % 32 || t.cols() > 65536) continue;
    if (const auto scales = int8_row_scales(t)) {
      t = repack_i8x8(t, *scales);
      n++;
    }
  }
  if (n) m.bind();
  return n;
}

InferenceRepack repack_for_inference(Model& m) {
  InferenceRepack r;
  r.sparse = repack_sparse(m);
  r.interleaved = repack_interleaved(m);
  r.int8_rows = repack_int8_rows(m);
  return r;
}

std::unique_ptr<Model> load_for_inference(const std::string& path, const std::string& tokenizer_path,
                                          const std::vector<std::string>& loras) {
  auto m = load_model(path, tokenizer_path);
  for (const auto& l : loras) apply_lora(*m, l);
  repack_for_inference(*m);
  return m;
}

}  // namespace lmpress
