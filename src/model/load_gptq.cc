#include "model/load_gptq.h"

#include <cstring>
#include <map>
#include <memory>
#include <optional>

#include "core/error.h"
#include "core/fp16.h"
#include "io/json_file.h"
#include "kernels/blocks.h"
#include "kernels/to_f32.h"

namespace lmpress {

IntGroupSpec gptq_spec_from_config(const nlohmann::json& qc, const std::string& path) {
  if (!qc.is_object()) fail("{}: quantization_config must be an object", path);
  const std::string qcn = "quantization_config";
  const std::string method = json_string(qc, "quant_method", path, qcn, "");
  if (method != "gptq")
    fail("{}: quantization_config.quant_method '{}' is not supported (gptq)", path, method);
  const std::string format = json_string(qc, "checkpoint_format", path, qcn, "gptq");
  if (format != "gptq") fail("{}: GPTQ checkpoint_format '{}' is not supported (gptq)", path, format);
  IntGroupSpec s;
  const int64_t bits = json_int(qc, "bits", path, qcn);
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    fail("{}: GPTQ with {} bits is not supported (2, 3, 4, 8)", path, bits);
  s.bits = int(bits);
  s.group = json_int(qc, "group_size", path, qcn);
  if (s.group == 0 || s.group < -1) fail("{}: quantization_config.group_size {} is invalid", path, s.group);
  s.sym = json_bool(qc, "sym", path, qcn, true);
  s.act_order = json_bool(qc, "desc_act", path, qcn, false);
  return s;
}

namespace {

template <typename T>
std::vector<T> copy_as(const Tensor& t, DType want, const std::string& path) {
  if (t.dtype != want) fail("{}: {} has dtype {}, expected {}", path, t.name, dtype_name(t.dtype), dtype_name(want));
  std::vector<T> v(t.nbytes / sizeof(T));
  std::memcpy(v.data(), t.data, v.size() * sizeof(T));
  return v;
}

// The matrix as Q4_0 or Q8_0 blocks when that stores exactly the same values,
// so that it runs on the int8 kernels instead of as f32: every 32-column
// block lies in one group (its scale, representable in f16, becomes the
// block's d) and q − zero fits the block's integers: Q4_0 (d·(nibble − 8))
// when 4-bit groups all have zero 8 (symmetric), else Q8_0 (d·int8), which
// holds any 2/3/4-bit group and symmetric 8-bit ones. nullopt otherwise
// (act-order column orders, groups narrower than 32, asymmetric 8-bit).
std::optional<Tensor> exact_blocks(const IntGroupTensor& q, const std::string& name) {
  if (q.cols % 32) return std::nullopt;
  for (int64_t c = 0; c < q.cols; c++)
    if (q.g_idx[size_t(c)] != q.g_idx[size_t(c - c % 32)]) return std::nullopt;
  bool q4 = q.spec.bits == 4;
  for (size_t g = 0; g < q.scale.size(); g++) {
    if (f16_to_f32(f32_to_f16(q.scale[g])) != q.scale[g]) return std::nullopt;
    q4 = q4 && q.zero[g] == 8;
  }
  const int64_t nb = q.cols / 32;
  auto buf = std::make_shared<std::vector<uint8_t>>(size_t(q.rows * nb) * (q4 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0)));
  for (int64_t r = 0; r < q.rows; r++)
    for (int64_t b = 0; b < nb; b++) {
      const size_t g = size_t(r * q.n_groups + q.g_idx[size_t(32 * b)]);
      const uint8_t* levels = q.q.data() + r * q.cols + 32 * b;
      const uint16_t d = f32_to_f16(q.scale[g]);
      if (q4) {
        auto& o = reinterpret_cast<BlockQ4_0*>(buf->data())[r * nb + b];
        o.d = d;
        for (int i = 0; i < 16; i++) o.qs[i] = uint8_t(levels[i] | levels[i + 16] << 4);
        continue;
      }
      auto& o = reinterpret_cast<BlockQ8_0*>(buf->data())[r * nb + b];
      o.d = d;
      for (int i = 0; i < 32; i++) {
        const int v = int(levels[i]) - int(q.zero[g]);
        if (v < -128 || v > 127) return std::nullopt;
        o.qs[i] = int8_t(v);
      }
    }
  Tensor t;
  t.name = name;
  t.dtype = q4 ? DType::Q4_0 : DType::Q8_0;
  t.shape = {q.rows, q.cols};
  t.data = buf->data();
  t.nbytes = buf->size();
  t.owner = buf;
  return t;
}

}  // namespace

std::vector<Tensor> dequantize_gptq_tensors(std::vector<Tensor> tensors, const IntGroupSpec& spec,
                                            const std::string& path) {
  std::map<std::string, std::map<std::string, const Tensor*>> parts;  // prefix -> suffix -> tensor
  std::vector<Tensor> out;
  for (const auto& t : tensors) {
    bool part = false;
    for (const char* suffix : {".qweight", ".qzeros", ".scales", ".g_idx"}) {
      const size_t n = std::strlen(suffix);
      if (t.name.size() > n && t.name.compare(t.name.size() - n, n, suffix) == 0) {
        parts[t.name.substr(0, t.name.size() - n)][suffix] = &t;
        part = true;
      }
    }
    if (!part) out.push_back(t);
  }
  for (const auto& [prefix, p] : parts) {
    for (const char* need : {".qweight", ".qzeros", ".scales"})
      if (!p.count(need)) fail("{}: GPTQ linear {} has no {}", path, prefix, need + 1);
    const Tensor& qw = *p.at(".qweight");
    const Tensor& sc = *p.at(".scales");
    if (qw.shape.size() != 2 || sc.shape.size() != 2)
      fail("{}: {}: qweight and scales must be 2-D", path, prefix);
    const int64_t rows = qw.shape[1];
    if (qw.shape[0] > (int64_t(1) << 40) / spec.bits) fail("{}: {}.qweight is too large", path, prefix);
    const int64_t cols = qw.shape[0] * 32 / spec.bits;
    if (rows < 1 || cols < 1) fail("{}: {}.qweight has shape {}", path, prefix, qw.shape_str());
    if (sc.shape[1] != rows) fail("{}: {}: scales have {} columns, qweight {}", path, prefix, sc.shape[1], rows);
    GptqPacked packed;
    packed.qweight = copy_as<int32_t>(qw, DType::I32, path);
    packed.qzeros = copy_as<int32_t>(*p.at(".qzeros"), DType::I32, path);
    packed.scales = to_f32(sc);
    if (p.count(".g_idx")) {
      packed.g_idx = copy_as<int32_t>(*p.at(".g_idx"), DType::I32, path);
    } else {
      const int64_t g = spec.group_size(cols);
      for (int64_t c = 0; c < cols; c++) packed.g_idx.push_back(int32_t(c / g));
    }
    // AutoGPTQ stores ceil(cols / group_size) groups (one when group_size is -1), act-order or not.
    // (A g_idx of the wrong length means bits disagree with the tensors: unpack_gptq says so.)
    const int64_t groups = (cols + spec.group_size(cols) - 1) / spec.group_size(cols);
    if (packed.g_idx.size() == size_t(cols) && sc.shape[0] != groups)
      fail("{}: {}.scales has {} groups (rows), but quantization_config.group_size {} over {} input columns gives {}",
           path, prefix, sc.shape[0], spec.group, cols, groups);
    for (int32_t g : packed.g_idx)
      if (g < 0 || g >= sc.shape[0]) fail("{}: {}.g_idx holds group {} of {}", path, prefix, g, sc.shape[0]);
    const IntGroupTensor q = unpack_gptq(packed, spec, rows, cols, path + ": " + prefix);
    if (auto blocks = exact_blocks(q, prefix + ".weight"))
      out.push_back(std::move(*blocks));
    else
      out.push_back(make_f32_tensor(prefix + ".weight", {rows, cols}, q.dequantize()));
  }
  return out;
}

}  // namespace lmpress
