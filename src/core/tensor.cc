#include "core/tensor.h"

#include <cstring>

#include "core/error.h"
#include "core/mapped_file.h"

namespace lmpress {

std::string Tensor::shape_str() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Tensor make_f32_tensor(std::string name, std::vector<int64_t> shape, std::vector<float> values) {
  auto buf = std::make_shared<std::vector<float>>(std::move(values));
  Tensor t;
  t.name = std::move(name);
  t.dtype = DType::F32;
  t.shape = std::move(shape);
  t.data = reinterpret_cast<const uint8_t*>(buf->data());
  t.nbytes = buf->size() * sizeof(float);
  t.owner = buf;
  if (uint64_t(t.numel()) != buf->size()) fail("internal: tensor {} shape/size mismatch", t.name);
  return t;
}

RowAddress::RowAddress(const Tensor& t) : data_(t.data), indexed_(is_row_indexed(t.dtype)) {
  if (is_row_interleaved(t.dtype)) fail("internal: tensor {} ({}) has no contiguous rows", t.name, dtype_name(t.dtype));
  if (!indexed_) stride_ = row_bytes(t.dtype, uint64_t(t.cols()));
}

Tensor make_owned_tensor(std::string name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
  auto buf = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  Tensor t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data = buf->data();
  t.nbytes = buf->size();
  t.owner = buf;
  if (t.nbytes != uint64_t(t.rows()) * row_bytes(dtype, uint64_t(t.cols())))
    fail("internal: tensor {} holds {} bytes, not its shape's", t.name, t.nbytes);
  return t;
}

const uint8_t* row_data(const Tensor& t, int64_t r) { return RowAddress(t)(r); }

void release_mapped_pages(const Tensor& t) { MappedFile::release(t.data, t.nbytes); }

}  // namespace lmpress
