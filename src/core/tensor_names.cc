#include "core/tensor_names.h"

namespace lmpress {

int64_t layer_of(const std::string& name) {
  if (name.compare(0, 4, "blk.") != 0) return -1;
  const size_t dot = name.find('.', 4);
  if (dot == std::string::npos || dot == 4 || dot > 9) return -1;
  const std::string num = name.substr(4, dot - 4);
  if (num.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(num);
}

std::string expert_tensor_name(const std::string& stacked, int64_t e) {
  const size_t at = stacked.rfind("_exps.weight");
  return stacked.substr(0, at) + "." + std::to_string(e) + ".weight";
}

std::optional<std::pair<std::string, int64_t>> stacked_expert_name(const std::string& name) {
  const int64_t l = layer_of(name);
  if (l < 0 || !name.ends_with(".weight")) return std::nullopt;
  const std::string b = "blk." + std::to_string(l) + ".";
  for (const char* proj : {"ffn_gate.", "ffn_up.", "ffn_down."}) {
    const std::string p = b + proj;
    if (!name.starts_with(p)) continue;
    const std::string num = name.substr(p.size(), name.size() - p.size() - 7);
    if (num.empty() || num.size() > 5 || num.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
    return std::pair{p.substr(0, p.size() - 1) + "_exps.weight", std::stoll(num)};
  }
  return std::nullopt;
}

std::string replace_suffix(const std::string& name, const std::string& from, const std::string& to) {
  return name.ends_with(from) ? name.substr(0, name.size() - from.size()) + to : name;
}

bool is_router(const std::string& name) { return layer_of(name) >= 0 && name.ends_with(".ffn_gate_inp.weight"); }

}  // namespace lmpress
