// A named, typed, shaped view of weight bytes. Shapes are outermost-first, as
// in PyTorch: a linear weight is {out_features, in_features}. The bytes live in
// a memory-mapped file or in an owned buffer kept alive by `owner`.
#pragma once
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace lmpress {

struct Tensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;
  std::shared_ptr<const void> owner;

  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  int64_t rows() const { return shape.size() < 2 ? 1 : numel() / shape.back(); }
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  std::string shape_str() const;
};

// A tensor for an output writer: a view (meta.data set), or bytes produced
// when the writer reaches it, so converting a model never holds it whole.
struct TensorToWrite {
  Tensor meta;
  std::function<std::vector<uint8_t>()> produce;
};

// Makes an owned f32 tensor.
Tensor make_f32_tensor(std::string name, std::vector<int64_t> shape, std::vector<float> values);
// Makes an owned tensor of rows stored as `dtype` (bytes: rows × row_bytes).
Tensor make_owned_tensor(std::string name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes);
// Start of row r (of the last dimension). Row-indexed types (F16_BITMAP) keep
// rows of varying size behind an index of uint64 offsets at the start of the
// tensor; the others have a fixed row stride.
const uint8_t* row_data(const Tensor& t, int64_t r);
// The same, with the stride looked up once (for loops over rows).
class RowAddress {
 public:
  explicit RowAddress(const Tensor& t);
  const uint8_t* operator()(int64_t r) const {
    if (!indexed_) return data_ + uint64_t(r) * stride_;
    uint64_t off;
    std::memcpy(&off, data_ + uint64_t(r) * sizeof(uint64_t), sizeof off);
    return data_ + off;
  }

 private:
  const uint8_t* data_;
  uint64_t stride_ = 0;
  bool indexed_;
};
// Gives back the resident pages of t's bytes when they are a view into a
// memory-mapped file (MappedFile::release); owned tensors are left alone.
void release_mapped_pages(const Tensor& t);

}  // namespace lmpress
