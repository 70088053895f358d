// A named, typed, shaped view of weight bytes. Shapes are outermost-first, as
// in PyTorch: a linear weight is {out_features, in_features}. The bytes live in
// a memory-mapped file or in an owned buffer kept alive by `owner`.
#pragma once
#include <cstdint>
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
// Copies any supported tensor (F32/F16/BF16) into f32.
std::vector<float> to_f32(const Tensor& t);
// Converts `n` elements starting at element `offset` of t into dst.
void to_f32(const Tensor& t, int64_t offset, int64_t n, float* dst);

}  // namespace lmpress
