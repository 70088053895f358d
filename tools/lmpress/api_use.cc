#include "api_use.h"

#include <fmt/format.h>

#include "core/error.h"

namespace lmpress::cli {

void api_check(lmpress_status s) {
  if (s != LMPRESS_OK) throw Error(lmpress_last_error());
}

nlohmann::ordered_json api_report() { return nlohmann::ordered_json::parse(lmpress_last_report()); }

std::vector<const char*> c_strings(const std::vector<std::string>& v) {
  std::vector<const char*> out;
  for (const auto& s : v) out.push_back(s.c_str());
  return out;
}

ApiModel api_load_model(const std::string& path, const std::string& tokenizer, const std::vector<std::string>& loras) {
  lmpress_model_params p = lmpress_model_default_params();
  p.tokenizer_path = c_str_or_null(tokenizer);
  const auto lora = c_strings(loras);
  p.lora = lora.data();
  p.n_lora = lora.size();
  lmpress_model* m = nullptr;
  api_check(lmpress_model_load(path.c_str(), &p, &m));
  return ApiModel(m);
}

std::string compensated_header(const nlohmann::ordered_json& report) {
  return report.contains("adapter") ? fmt::format(" {:>10}", "comp_err") : "";
}

std::string compensated_cell(const nlohmann::ordered_json& report, const nlohmann::ordered_json& tensor) {
  if (!report.contains("adapter")) return "";
  return tensor.contains("compensated_error") ? fmt::format(" {:>10.6f}", number(tensor["compensated_error"]))
                                              : fmt::format(" {:>10}", "-");
}

std::string adapter_line(const nlohmann::ordered_json& report) {
  const auto& a = report["adapter"];
  return fmt::format("adapter {} (rank {}): {:.2f} MiB; model + adapter {:.3f} bits per weight",
                     a["path"].get<std::string>(), a["rank"].get<int64_t>(),
                     double(a["bytes"].get<uint64_t>()) / (1024.0 * 1024.0), a["bpw_with_model"].get<double>());
}

}  // namespace lmpress::cli
