// A factorized linear W ≈ B·A (`lmpress lowrank`: SVD, ASVD, SVD-LLM) held
// as one tensor of W's name and shape [out, in] whose dtype is LOW_RANK and
// whose data is the pair of factors: A [rank, in] and B [out, rank], each in
// any weight type. matmul runs it as x·Aᵀ then ·Bᵀ (kernels/matmul.h), to_f32
// gives the rows of B·A, and a GGUF file stores the two factors as
// `NAME.lr_a` and `NAME.lr_b` (NAME without `.weight`): an lmpress file,
// which llama.cpp does not load.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace lmpress {

struct LowRankPair {
  Tensor a;  // [rank, in]
  Tensor b;  // [out, rank]
};

// The composite tensor `name` of the factors (shapes checked: a [r, in],
// b [out, r], r >= 1, both 2-D; fails naming them otherwise). nbytes is the
// two factors' bytes, so sizes count what is stored.
Tensor make_low_rank_tensor(const std::string& name, Tensor a, Tensor b);
// The factors of a LOW_RANK tensor.
const LowRankPair& low_rank_parts(const Tensor& t);
inline int64_t low_rank_rank(const Tensor& t) { return low_rank_parts(t).a.shape[0]; }
// The values a tensor stores: its elements, or a factorized one's r·(out + in);
// also the multiply-adds per token of a linear.
int64_t stored_params(const Tensor& t);
// The file names of a weight's factors: "blk.0.attn_q.weight" -> {"blk.0.attn_q.lr_a", "blk.0.attn_q.lr_b"}.
std::pair<std::string, std::string> low_rank_part_names(const std::string& weight_name);
// Replaces each pair of factor tensors in a file's tensors by their
// composite (named NAME.weight); a factor without its partner, or a
// composite whose weight is also there, fails naming the file and tensor.
void join_low_rank_parts(std::vector<Tensor>& tensors, const std::string& path);

}  // namespace lmpress
