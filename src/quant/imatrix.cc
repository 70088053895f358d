#include "quant/imatrix.h"

#include <cmath>

#include "core/error.h"
#include "core/tensor.h"
#include "io/gguf.h"
#include "core/tensor_names.h"
#include "kernels/to_f32.h"

namespace lmpress {

std::string fused_input_alias(const std::string& name) {
  for (const char* member : {".attn_q.weight", ".attn_k.weight", ".attn_v.weight", ".ffn_gate.weight"})
    if (name.ends_with(member) && name.starts_with("blk."))
      return name.substr(0, name.size() - std::string(member).size()) +
             (std::string(member) == ".ffn_gate.weight" ? ".ffn_up.weight" : ".attn_qkv.weight");
  return "";
}

std::vector<float> Imatrix::importance(const std::string& name) const {
  auto it = entries.find(name);
  if (it == entries.end()) it = entries.find(fused_input_alias(name));
  if (it == entries.end()) return {};
  // llama-quantize's rule for an entry no token reached (an expert never routed to): importance 1 everywhere.
  if (it->second.count <= 0) return std::vector<float>(it->second.sum2.size(), 1.0f);
  std::vector<float> out(it->second.sum2.size());
  for (size_t j = 0; j < out.size(); j++) out[j] = float(it->second.sum2[j] / double(it->second.count));
  return out;
}

void Imatrix::accumulate(const std::vector<std::string>& names, const float* x, int64_t n, int64_t cols) {
  std::vector<double> s(static_cast<size_t>(cols), 0.0);
  for (int64_t t = 0; t < n; t++)
    for (int64_t j = 0; j < cols; j++) s[size_t(j)] += double(x[t * cols + j]) * x[t * cols + j];
  for (const auto& name : names) {
    auto& e = entries[name];
    if (e.sum2.empty()) e.sum2.assign(size_t(cols), 0.0);
    if (int64_t(e.sum2.size()) != cols) fail("imatrix: {} has {} columns, got {}", name, e.sum2.size(), cols);
    for (int64_t j = 0; j < cols; j++) e.sum2[size_t(j)] += s[size_t(j)];
    e.count += n;
  }
}

Imatrix read_imatrix(const std::string& path) {
  const GGUFFile f = GGUFFile::open(path);
  if (f.get_string("general.type").value_or("") != "imatrix")
    fail("{}: not an imatrix GGUF (general.type is not \"imatrix\"; legacy .dat files are not supported)", path);
  Imatrix im;
  if (const auto* d = f.find("imatrix.datasets"); d && d->type == GGUFType::ARRAY)
    for (const auto& v : d->as_array())
      if (v.type == GGUFType::STRING) im.datasets.push_back(v.as_string());
  im.chunk_count = uint32_t(f.get_int("imatrix.chunk_count").value_or(0));
  im.chunk_size = uint32_t(f.get_int("imatrix.chunk_size").value_or(0));
  const auto tensors = f.tensors();
  std::map<std::string, const Tensor*> by_name;
  for (const auto& t : tensors) by_name[t.name] = &t;
  const std::string kSum = ".in_sum2", kCount = ".counts";
  for (const auto& t : tensors) {
    if (t.name.size() <= kSum.size() || t.name.compare(t.name.size() - kSum.size(), kSum.size(), kSum) != 0) continue;
    const std::string name = t.name.substr(0, t.name.size() - kSum.size());
    auto c = by_name.find(name + kCount);
    if (c == by_name.end()) fail("{}: {} has no matching {}", path, t.name, name + kCount);
    const auto sums = to_f32(t);
    const auto counts = to_f32(*c->second);
    if (counts.empty() || sums.size() % counts.size() != 0) fail("{}: {} and its counts disagree in shape", path, name);
    for (float v : sums)
      if (!std::isfinite(v) || v < 0) fail("{}: {} has a non-finite or negative sum", path, name);
    const size_t experts = counts.size(), cols = sums.size() / experts;
    // A stack of experts (blk.N.ffn_up_exps.weight): one entry per expert, under lmpress's per-expert names.
    if (experts > 1 && !name.ends_with("_exps.weight"))
      fail("{}: {} has {} rows of counts, but only a stack of experts (*_exps.weight) has more than one", path, name,
           experts);
    for (size_t x = 0; x < experts; x++) {
      if (!(counts[x] >= 0) || !std::isfinite(counts[x])) fail("{}: {} has a bad count {}", path, name, counts[x]);
      ImatrixEntry e;
      e.sum2.assign(sums.begin() + long(x * cols), sums.begin() + long((x + 1) * cols));
      e.count = int64_t(counts[x]);
      im.entries[experts > 1 ? expert_tensor_name(name, int64_t(x)) : name] = std::move(e);
    }
  }
  if (im.entries.empty()) fail("{}: the imatrix holds no entries", path);
  return im;
}

void write_imatrix(const Imatrix& im, const std::string& path) {
  GGUFWriter w;
  w.set("general.type", GGUFValue::str("imatrix"));
  w.set("imatrix.datasets", GGUFValue::str_array(im.datasets));
  w.set("imatrix.chunk_count", GGUFValue::u32(im.chunk_count));
  w.set("imatrix.chunk_size", GGUFValue::u32(im.chunk_size));
  // Experts as llama.cpp stores them: one entry per stack, a row of sums and a count per expert.
  std::map<std::string, std::map<int64_t, const ImatrixEntry*>> stacks;
  for (const auto& [name, e] : im.entries) {
    if (const auto st = stacked_expert_name(name)) {
      stacks[st->first][st->second] = &e;
      continue;
    }
    std::vector<float> s(e.sum2.begin(), e.sum2.end());
    const int64_t cols = int64_t(s.size());
    w.add_tensor(make_f32_tensor(name + ".in_sum2", {1, cols}, std::move(s)));
    w.add_tensor(make_f32_tensor(name + ".counts", {1, 1}, {float(e.count)}));
  }
  for (const auto& [name, experts] : stacks) {
    const int64_t n = int64_t(experts.size()), cols = int64_t(experts.begin()->second->sum2.size());
    std::vector<float> sums, counts;
    for (int64_t x = 0; x < n; x++) {
      const auto it = experts.find(x);
      if (it == experts.end() || int64_t(it->second->sum2.size()) != cols)
        fail("internal: imatrix entries of {} are not experts 0..{} of {} columns", name, n - 1, cols);
      sums.insert(sums.end(), it->second->sum2.begin(), it->second->sum2.end());
      counts.push_back(float(it->second->count));
    }
    w.add_tensor(make_f32_tensor(name + ".in_sum2", {n, cols}, std::move(sums)));
    w.add_tensor(make_f32_tensor(name + ".counts", {n, 1}, std::move(counts)));
  }
  w.write(path);
}

std::vector<float> importance_or(const Imatrix* im, const std::string& weight_name, std::vector<float> fallback) {
  if (im) {
    auto v = im->importance(weight_name);
    if (!v.empty()) return v;
  }
  return fallback;
}

}  // namespace lmpress
