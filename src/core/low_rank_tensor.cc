#include "core/low_rank_tensor.h"

#include <map>
#include <memory>

#include "core/error.h"

namespace lmpress {

Tensor make_low_rank_tensor(const std::string& name, Tensor a, Tensor b) {
  if (a.shape.size() != 2 || b.shape.size() != 2 || a.shape[0] < 1 || b.shape[1] != a.shape[0])
    fail("{}: factors {} {} and {} {} are not A [rank, in] and B [out, rank]", name, a.name, a.shape_str(), b.name,
         b.shape_str());
  auto pair = std::make_shared<LowRankPair>(LowRankPair{std::move(a), std::move(b)});
  Tensor t;
  t.name = name;
  t.dtype = DType::LOW_RANK;
  t.shape = {pair->b.shape[0], pair->a.shape[1]};
  t.data = reinterpret_cast<const uint8_t*>(pair.get());
  t.nbytes = pair->a.nbytes + pair->b.nbytes;
  t.owner = pair;
  return t;
}

const LowRankPair& low_rank_parts(const Tensor& t) {
  if (t.dtype != DType::LOW_RANK) fail("internal: {} is not a factorized tensor", t.name);
  return *reinterpret_cast<const LowRankPair*>(t.data);
}

int64_t stored_params(const Tensor& t) {
  if (t.dtype != DType::LOW_RANK) return t.numel();
  const LowRankPair& p = low_rank_parts(t);
  return p.a.numel() + p.b.numel();
}

std::pair<std::string, std::string> low_rank_part_names(const std::string& weight_name) {
  const std::string suffix = ".weight";
  const std::string base =
      weight_name.ends_with(suffix) ? weight_name.substr(0, weight_name.size() - suffix.size()) : weight_name;
  return {base + ".lr_a", base + ".lr_b"};
}

void join_low_rank_parts(std::vector<Tensor>& tensors, const std::string& path) {
  std::map<std::string, size_t> a_of, b_of;  // NAME.weight -> index of its factor
  std::map<std::string, size_t> weights;
  for (size_t i = 0; i < tensors.size(); i++) {
    const std::string& n = tensors[i].name;
    if (n.ends_with(".lr_a"))
      a_of[n.substr(0, n.size() - 5) + ".weight"] = i;
    else if (n.ends_with(".lr_b"))
      b_of[n.substr(0, n.size() - 5) + ".weight"] = i;
    else
      weights[n] = i;
  }
  if (a_of.empty() && b_of.empty()) return;
  for (const auto& [w, i] : b_of)
    if (!a_of.count(w)) fail("{}: tensor {} has no {} beside it", path, tensors[i].name, low_rank_part_names(w).first);
  std::vector<bool> drop(tensors.size(), false);
  for (const auto& [w, i] : a_of) {  // the composite takes A's place, B's goes
    const auto b = b_of.find(w);
    if (b == b_of.end()) fail("{}: tensor {} has no {} beside it", path, tensors[i].name, low_rank_part_names(w).second);
    if (weights.count(w)) fail("{}: tensor {} is there beside its factors {}", path, w, tensors[i].name);
    tensors[i] = make_low_rank_tensor(w, tensors[i], tensors[b->second]);
    drop[b->second] = true;
  }
  std::vector<Tensor> out;
  for (size_t i = 0; i < tensors.size(); i++)
    if (!drop[i]) out.push_back(std::move(tensors[i]));
  tensors = std::move(out);
}

}  // namespace lmpress
