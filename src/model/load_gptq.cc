#include "model/load_gptq.h"

#include <cstring>
#include <map>

#include "core/error.h"

namespace lmpress {

IntGroupSpec gptq_spec_from_config(const nlohmann::json& qc, const std::string& path) {
  if (!qc.is_object()) fail("{}: quantization_config must be an object", path);
  const std::string method = qc.value("quant_method", "");
  if (method != "gptq")
    fail("{}: quantization_config.quant_method '{}' is not supported (gptq)", path, method);
  const std::string format = qc.value("checkpoint_format", "gptq");
  if (format != "gptq") fail("{}: GPTQ checkpoint_format '{}' is not supported (gptq)", path, format);
  auto get_int = [&](const char* k) -> int64_t {
    if (!qc.contains(k) || !qc[k].is_number_integer()) fail("{}: quantization_config.{} must be an integer", path, k);
    return qc[k].get<int64_t>();
  };
  IntGroupSpec s;
  s.bits = int(get_int("bits"));
  if (s.bits != 2 && s.bits != 3 && s.bits != 4 && s.bits != 8)
    fail("{}: GPTQ with {} bits is not supported (2, 3, 4, 8)", path, s.bits);
  s.group = get_int("group_size");
  if (s.group == 0 || s.group < -1) fail("{}: quantization_config.group_size {} is invalid", path, s.group);
  s.sym = qc.value("sym", true);
  s.act_order = qc.value("desc_act", false);
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
    for (int32_t g : packed.g_idx)
      if (g < 0 || g >= sc.shape[0]) fail("{}: {}.g_idx holds group {} of {}", path, prefix, g, sc.shape[0]);
    const IntGroupTensor q = unpack_gptq(packed, spec, rows, cols, path + ": " + prefix);
    out.push_back(make_f32_tensor(prefix + ".weight", {rows, cols}, q.dequantize()));
  }
  return out;
}

}  // namespace lmpress
