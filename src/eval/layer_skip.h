// What bypassing one block costs: the mean KL divergence, over a window of
// text, of the model's next-token distributions with that block skipped from
// its full ones. Self-speculative decoding (--spec self:skip:auto:N) drafts
// with the N blocks whose loss is least, each measured alone (the losses of a
// set are not additive: this is the usual one-at-a-time ranking, e.g. the
// layer-skip papers' first pass).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"

namespace lmpress {

// One value per block: mean over the positions of `tokens` of
// KL(full ‖ block skipped), natural log. `tokens` is one window (BOS included
// by the caller), at most the model's context.
std::vector<double> block_skip_kld(const Model& m, const std::vector<int32_t>& tokens);

// The n blocks of least loss, ascending block order; ties: the lower block.
std::vector<int64_t> least_loss_blocks(const std::vector<double>& loss, int64_t n);

// `--spec self:skip:auto:N` with `--spec-calib calib`: "self:skip:LIST", the N
// blocks whose skipping loses least on the first window (up to 256 tokens,
// at most n_ctx) of the calibration text; *note gets a line saying which and
// why. Any other type comes back as it is (note untouched).
std::string resolve_skip_auto(const std::string& type, const std::string& calib, const Model& m, int64_t n_ctx,
                              std::string* note);

}  // namespace lmpress
