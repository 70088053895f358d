#include "compress/module_select.h"

#include <algorithm>

#include "compress/calibration.h"
#include "core/error.h"
#include "core/tensor_names.h"

namespace lmpress {

std::string linear_module(const std::string& weight, const ModelConfig& c) {
  const std::string hf = canonical_to_hf(weight, c);
  const std::string suffix = ".weight";
  if (hf.size() <= suffix.size() || hf.compare(hf.size() - suffix.size(), suffix.size(), suffix) != 0) return "";
  return hf.substr(0, hf.size() - suffix.size());
}

std::set<std::string> selected_linears(const Model& m, const ModuleSelector& s) {
  std::vector<std::pair<std::string, std::string>> linears;  // (weight, module)
  std::vector<std::string> routers;  // modules never compressed, which an ignore entry may name
  for (int64_t l = 0; l < m.cfg.n_layers; l++)
    for (LinearSite site : kLinearSites)
      for (int64_t e : site_experts(m.cfg))
        for (const auto& w : linear_names(m.cfg, l, site, e)) {
          const std::string mod = linear_module(w, m.cfg);
          if (is_router(w)) {
            if (!mod.empty()) routers.push_back(mod);
            continue;
          }
          if (mod.empty()) fail("{} has no Hugging Face module name to match targets against", w);
          linears.emplace_back(w, mod);
        }
  auto selects_a_linear = [&](const ModuleTarget& t) {
    for (const auto& [w, mod] : linears)
      if (s.entry_selects(t, mod)) return true;
    return false;
  };
  for (const auto& t : s.targets)
    if (!selects_a_linear(t))
      fail("{}: '{}' selects none of the model's linear layers (e.g. {})", t.what(), t.spelled(),
           linears.empty() ? std::string("none") : linears.front().second);
  // Every module of the model (its tensors' HF names without .weight / .bias), made once for the ignore entries.
  std::vector<std::string> modules;
  if (s.containing && !s.ignore.empty())
    for (const auto& tensor : m.tensors) {
      std::string mod = canonical_to_hf(tensor.name, m.cfg);
      const size_t dot = mod.rfind('.');
      if (dot != std::string::npos) modules.push_back(mod.substr(0, dot));
    }
  for (const auto& t : s.ignore) {
    // llm-compressor's recipes for mixtures ignore the routers (re:.*mlp.gate$), which stay float anyway.
    if (t.matches_name("lm_head") || std::any_of(routers.begin(), routers.end(), [&](const std::string& r) { return s.entry_selects(t, r); }))
      continue;
    if (!s.containing) {  // entries must name linears themselves
      if (!selects_a_linear(t))
        fail("{}: '{}' names no linear layer (quantization matches each linear's own name, as compressed-tensors "
             "does: re:{}\\. leaves out the linears inside a module)",
             t.what(), t.spelled(), t.spelled());
      continue;
    }
    if (std::none_of(modules.begin(), modules.end(), [&](const std::string& mod) { return t.selects_linear(mod); }))
      fail("{}: '{}' names no module of the model", t.what(), t.spelled());
  }
  std::set<std::string> out;
  for (const auto& [w, mod] : linears)
    if (s.selects(mod)) out.insert(w);
  return out;
}

}  // namespace lmpress
