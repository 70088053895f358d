#include "compress/report_json.h"

namespace lmpress {

using Json = nlohmann::ordered_json;

double bpw_with_adapter(const AdapterReport& a, uint64_t bytes_out, int64_t n_params) {
  return n_params ? double(bytes_out + a.bytes) * 8.0 / double(n_params) : 0.0;
}

namespace {

void add_memory_fields(Json& j, const MemoryReport& m) {
  j["peak_rss_bytes"] = m.peak_rss;
  j["largest_block_f32_bytes"] = m.block_f32_bytes;
  j["activation_bytes"] = m.activation_bytes;
  j["statistics_bytes"] = m.statistics_bytes;
}

Json adapter_json(const AdapterReport& a, uint64_t bytes_out, int64_t n_params) {
  return {{"path", a.path}, {"rank", a.rank}, {"bytes", a.bytes},
          {"bpw_with_model", bpw_with_adapter(a, bytes_out, n_params)}};
}

double bits_per_weight(uint64_t bytes, int64_t n_params) {
  return n_params ? double(bytes) * 8.0 / double(n_params) : 0.0;
}

}  // namespace

MemoryReport memory_from_json(const Json& j) {
  MemoryReport m;
  m.peak_rss = j.value("peak_rss_bytes", uint64_t(0));
  m.block_f32_bytes = j.value("largest_block_f32_bytes", uint64_t(0));
  m.activation_bytes = j.value("activation_bytes", uint64_t(0));
  m.statistics_bytes = j.value("statistics_bytes", uint64_t(0));
  return m;
}

Json quantize_report_json(const QuantizeReport& r) {
  Json tensors = Json::array();
  for (const auto& t : r.tensors) {
    Json j{{"name", t.name}, {"shape", t.shape}, {"type", t.type}, {"weight_error", t.weight_error}};
    if (t.output_error >= 0) j["output_error"] = t.output_error;
    if (t.compensated_error >= 0) j["compensated_error"] = t.compensated_error;
    tensors.push_back(j);
  }
  Json j{{"tensors", tensors},
         {"n_params", r.n_params},
         {"bytes_in", r.bytes_in},
         {"bytes_out", r.bytes_out},
         {"bpw", bits_per_weight(r.bytes_out, r.n_params)},
         {"calib_tokens", r.calib_tokens},
         {"seconds", r.seconds}};
  if (!r.uncalibrated.empty()) j["uncalibrated"] = r.uncalibrated;
  if (r.expert_tensors > 0)
    j["imatrix_expert_coverage"] = {{"tensors", r.expert_tensors}, {"with_data", r.expert_tensors_with_data}};
  if (r.adapter.rank) j["adapter"] = adapter_json(r.adapter, r.bytes_out, r.n_params);
  add_memory_fields(j, r.memory);
  return j;
}

Json prune_report_json(const PruneReport& r, const PruneOptions& o) {
  Json tensors = Json::array();
  for (const auto& t : r.tensors) {
    Json j{{"name", t.name}, {"shape", t.shape}, {"sparsity", t.sparsity}};
    if (t.output_error >= 0) j["output_error"] = t.output_error;
    if (t.compensated_error >= 0) j["compensated_error"] = t.compensated_error;
    tensors.push_back(j);
  }
  Json j{{"method", prune_method_name(o.method)},
         {"pattern", o.pattern.name()},
         {"tensors", tensors},
         {"sparsity_linear", r.n_linear ? double(r.n_zero) / double(r.n_linear) : 0.0},
         {"sparsity_model", r.n_params ? double(r.n_zero) / double(r.n_params) : 0.0},
         {"n_params", r.n_params},
         {"bytes_out", r.bytes_out},
         {"bpw", bits_per_weight(r.bytes_out, r.n_params)},
         {"calib_tokens", r.calib_tokens},
         {"seconds", r.seconds}};
  if (!r.uncalibrated.empty()) j["uncalibrated"] = r.uncalibrated;
  if (!r.layer_sparsity.empty()) {
    j["owl_outlier_ratio"] = r.owl_ratios;
    j["layer_sparsity"] = r.layer_sparsity;
  }
  if (r.adapter.rank) j["adapter"] = adapter_json(r.adapter, r.bytes_out, r.n_params);
  add_memory_fields(j, r.memory);
  return j;
}

Json structured_report_json(const StructuredReport& r) {
  Json j{{"params_before", r.params_before},
         {"params_after", r.params_after},
         {"heads", {r.heads_before, r.heads_after}},
         {"kv_heads", {r.kv_heads_before, r.kv_heads_after}},
         {"ffn", {r.ffn_before, r.ffn_after}},
         {"expert_ffn", {r.expert_ffn_before, r.expert_ffn_after}},
         {"layers", {r.layers_before, r.layers_after}},
         {"layer_heads", r.layer_heads},
         {"layer_kv_heads", r.layer_kv_heads},
         {"layer_ffn", r.layer_ffn},
         {"block_distance", r.block_distance},
         {"removed_blocks", r.removed_blocks},
         {"calib_tokens", r.calib_tokens}};
  add_memory_fields(j, r.memory);
  return j;
}

Json expert_prune_report_json(const ExpertPruneReport& r) {
  Json layers = Json::array();
  for (size_t l = 0; l < r.kept.size(); l++)
    layers.push_back({{"kept", r.kept[l]}, {"scores", r.scores[l]}, {"tokens", r.counts[l]}});
  return {{"experts_before", r.experts_before}, {"experts_after", r.experts_after}, {"used_before", r.used_before},
          {"used_after", r.used_after},         {"params_before", r.params_before}, {"params_after", r.params_after},
          {"bytes_before", r.bytes_before},     {"bytes_after", r.bytes_after},     {"calib_tokens", r.calib_tokens},
          {"layers", layers}};
}

}  // namespace lmpress
