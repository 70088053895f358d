#include "quant/int_checkpoint.h"

#include "core/error.h"

namespace lmpress {

namespace {

// AutoAWQ's AWQ_ORDER: nibble i of a word holds output column 8j + kAwqOrder[i].
constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// Levels v[0..n) (each < 2^bits) as words of 32 / bits values, value i of a
// run in bits [bits·i, bits·(i+1)), the last word zero-padded.
void pack_runs(const uint32_t* v, int64_t n, int bits, int32_t* words) {
  const int per = 32 / bits;
  for (int64_t w = 0; w < (n + per - 1) / per; w++) {
    uint32_t x = 0;
    for (int i = 0; i < per && w * per + i < n; i++) x |= v[w * per + i] << (bits * i);
    words[w] = int32_t(x);
  }
}

uint32_t run_value(const int32_t* words, int64_t i, int bits) {
  const int per = 32 / bits;
  return (uint32_t(words[i / per]) >> (bits * (i % per))) & ((1u << bits) - 1);
}

}  // namespace

const char* int_checkpoint_name(IntCheckpoint f) {
  switch (f) {
    case IntCheckpoint::Gptq: return "gptq";
    case IntCheckpoint::Awq: return "awq";
    case IntCheckpoint::CompressedTensors: return "compressed-tensors";
  }
  return "?";
}

IntCheckpoint parse_int_checkpoint(const std::string& name, const std::string& option) {
  if (name == "gptq") return IntCheckpoint::Gptq;
  if (name == "awq") return IntCheckpoint::Awq;
  if (name == "compressed-tensors") return IntCheckpoint::CompressedTensors;
  fail("{} '{}': unknown checkpoint format (gptq, awq, compressed-tensors)", option, name);
}

void check_int_checkpoint(IntCheckpoint f, const IntGroupSpec& s) {
  if (f == IntCheckpoint::Awq) {
    if (s.bits != 4) fail("--format awq: AWQ checkpoints are 4-bit (--type int4-...), not {}", s.name());
    if (s.act_order) fail("--format awq: AWQ checkpoints have no g_idx, so no --act-order");
  }
  if (f == IntCheckpoint::CompressedTensors && s.bits != 4 && s.bits != 8)
    fail("--format compressed-tensors: pack-quantized is written for 4 and 8 bits here, not {}", s.name());
}

AwqPacked pack_awq(const IntGroupTensor& t) {
  check_int_checkpoint(IntCheckpoint::Awq, t.spec);
  if (t.rows % 8) fail("AWQ: {} output rows are not a multiple of 8", t.rows);
  const int64_t ow = t.rows / 8;
  AwqPacked p;
  p.qweight.assign(size_t(t.cols * ow), 0);
  p.qzeros.assign(size_t(t.n_groups * ow), 0);
  p.scales.assign(size_t(t.n_groups * t.rows), 0.0f);
  for (int64_t c = 0; c < t.cols; c++)
    for (int64_t j = 0; j < ow; j++) {
      uint32_t x = 0;
      for (int i = 0; i < 8; i++) x |= uint32_t(t.q[size_t((8 * j + kAwqOrder[i]) * t.cols + c)]) << (4 * i);
      p.qweight[size_t(c * ow + j)] = int32_t(x);
    }
  for (int64_t g = 0; g < t.n_groups; g++) {
    for (int64_t j = 0; j < ow; j++) {
      uint32_t x = 0;
      for (int i = 0; i < 8; i++) {
        const uint16_t z = t.zero[size_t((8 * j + kAwqOrder[i]) * t.n_groups + g)];
        if (z > 15) fail("AWQ: zero point {} does not fit 4 bits", z);
        x |= uint32_t(z) << (4 * i);
      }
      p.qzeros[size_t(g * ow + j)] = int32_t(x);
    }
    for (int64_t r = 0; r < t.rows; r++) p.scales[size_t(g * t.rows + r)] = t.scale[size_t(r * t.n_groups + g)];
  }
  return p;
}

IntGroupTensor unpack_awq(const AwqPacked& p, const IntGroupSpec& s, int64_t rows, int64_t cols,
                          const std::string& what) {
  check_int_checkpoint(IntCheckpoint::Awq, s);
  if (rows % 8) fail("{}: {} output columns are not a multiple of 8", what, rows);
  if (cols % s.group_size(cols)) fail("{}: {} input rows are not whole groups of {}", what, cols, s.group_size(cols));
  IntGroupTensor t(s, rows, cols);
  const int64_t ow = rows / 8;
  if (int64_t(p.qweight.size()) != cols * ow) fail("{}: qweight has {} words, expected {}", what, p.qweight.size(), cols * ow);
  if (int64_t(p.qzeros.size()) != t.n_groups * ow)
    fail("{}: qzeros has {} words, expected {}", what, p.qzeros.size(), t.n_groups * ow);
  if (int64_t(p.scales.size()) != t.n_groups * rows)
    fail("{}: scales has {} values, expected {}", what, p.scales.size(), t.n_groups * rows);
  for (int64_t c = 0; c < cols; c++)
    for (int64_t j = 0; j < ow; j++)
      for (int i = 0; i < 8; i++)
        t.q[size_t((8 * j + kAwqOrder[i]) * cols + c)] = uint8_t((uint32_t(p.qweight[size_t(c * ow + j)]) >> (4 * i)) & 15);
  for (int64_t g = 0; g < t.n_groups; g++) {
    for (int64_t j = 0; j < ow; j++)
      for (int i = 0; i < 8; i++)
        t.zero[size_t((8 * j + kAwqOrder[i]) * t.n_groups + g)] =
            uint16_t((uint32_t(p.qzeros[size_t(g * ow + j)]) >> (4 * i)) & 15);
    for (int64_t r = 0; r < rows; r++) t.scale[size_t(r * t.n_groups + g)] = p.scales[size_t(g * rows + r)];
  }
  return t;
}

CtPacked pack_compressed_tensors(const IntGroupTensor& t) {
  check_int_checkpoint(IntCheckpoint::CompressedTensors, t.spec);
  const int bits = t.spec.bits, per = 32 / bits;
  const int64_t kw = (t.cols + per - 1) / per, zw = (t.rows + per - 1) / per;
  CtPacked p;
  p.weight_packed.assign(size_t(t.rows * kw), 0);
  std::vector<uint32_t> v(size_t(std::max(t.rows, t.cols)));
  for (int64_t r = 0; r < t.rows; r++) {
    for (int64_t c = 0; c < t.cols; c++) v[size_t(c)] = t.q[size_t(r * t.cols + c)];
    pack_runs(v.data(), t.cols, bits, p.weight_packed.data() + r * kw);
  }
  p.scale = t.scale;  // [rows, n_groups] already
  if (!t.spec.sym) {
    // Packed along the output dimension: column g of [zw, n_groups] holds the rows' zeros.
    p.zero_point.assign(size_t(zw * t.n_groups), 0);
    std::vector<int32_t> col(static_cast<size_t>(zw));
    for (int64_t g = 0; g < t.n_groups; g++) {
      for (int64_t r = 0; r < t.rows; r++) {
        const uint16_t z = t.zero[size_t(r * t.n_groups + g)];
        if (z > t.spec.max_level()) fail("compressed-tensors: zero point {} does not fit {} bits", z, bits);
        v[size_t(r)] = z;
      }
      pack_runs(v.data(), t.rows, bits, col.data());
      for (int64_t w = 0; w < zw; w++) p.zero_point[size_t(w * t.n_groups + g)] = col[size_t(w)];
    }
  }
  if (t.spec.act_order) p.g_idx = t.g_idx;
  return p;
}

IntGroupTensor unpack_compressed_tensors(const CtPacked& p, const IntGroupSpec& s, int64_t rows, int64_t cols,
                                         const std::string& what) {
  check_int_checkpoint(IntCheckpoint::CompressedTensors, s);
  if (rows < 1 || cols < 1) fail("{}: weight_shape {}x{} is empty", what, rows, cols);
  if (cols % s.group_size(cols)) fail("{}: {} input columns are not whole groups of {}", what, cols, s.group_size(cols));
  const int bits = s.bits, per = 32 / bits;
  const int64_t kw = (cols + per - 1) / per, zw = (rows + per - 1) / per, n_groups = cols / s.group_size(cols);
  // The sizes weight_shape claims, against the data there is, before anything of that size is allocated.
  if (p.weight_packed.size() != checked_mul(uint64_t(rows), uint64_t(kw), "weight_packed"))
    fail("{}: weight_packed has {} words, weight_shape {}x{} needs {}", what, p.weight_packed.size(), rows, cols,
         uint64_t(rows) * uint64_t(kw));
  if (p.scale.size() != checked_mul(uint64_t(rows), uint64_t(n_groups), "weight_scale"))
    fail("{}: weight_scale has {} values, expected {}", what, p.scale.size(), uint64_t(rows) * uint64_t(n_groups));
  IntGroupTensor t(s, rows, cols);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) t.q[size_t(r * cols + c)] = uint8_t(run_value(p.weight_packed.data() + r * kw, c, bits));
  t.scale = p.scale;
  if (s.sym) {
    if (!p.zero_point.empty()) fail("{}: weight_zero_point present in a symmetric checkpoint", what);
    std::fill(t.zero.begin(), t.zero.end(), uint16_t((s.max_level() + 1) / 2));
  } else {
    if (int64_t(p.zero_point.size()) != zw * t.n_groups)
      fail("{}: weight_zero_point has {} words, expected {}", what, p.zero_point.size(), zw * t.n_groups);
    std::vector<int32_t> col(static_cast<size_t>(zw));
    for (int64_t g = 0; g < t.n_groups; g++) {
      for (int64_t w = 0; w < zw; w++) col[size_t(w)] = p.zero_point[size_t(w * t.n_groups + g)];
      for (int64_t r = 0; r < rows; r++) t.zero[size_t(r * t.n_groups + g)] = uint16_t(run_value(col.data(), r, bits));
    }
  }
  if (!p.g_idx.empty()) {
    if (int64_t(p.g_idx.size()) != cols) fail("{}: weight_g_idx has {} entries for {} columns", what, p.g_idx.size(), cols);
    for (int32_t g : p.g_idx)
      if (g < 0 || g >= t.n_groups) fail("{}: weight_g_idx holds group {} of {}", what, g, t.n_groups);
    t.g_idx = p.g_idx;
  }
  return t;
}

}  // namespace lmpress
