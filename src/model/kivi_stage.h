// The newest positions of a KIVI cache (kernels/kivi.h), kept as f16 rows for
// one sequence and layer until they are quantized: a key group needs all G of
// its positions, and KIVI keeps the most recent `residual` positions in full
// precision besides. The stage holds positions [quantized(), n) with
// residual ≤ n − quantized() < residual + G once n ≥ residual; when appending
// makes it residual + G, the oldest G positions are quantized (their keys one
// group per channel, their values one row each) and dropped from the stage.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/kv_types.h"

namespace lmpress {

class KiviStage {
 public:
  // Where the quantized data of a position go: its key group (called with the
  // group's first position) and its value row.
  using Address = std::function<uint8_t*(int64_t pos)>;

  KiviStage(const KvCacheSpec& kv, int64_t kv_dim);
  // Appends the next position's k and v (kv_dim floats each, rounded to f16),
  // quantizing the oldest group when the stage is full.
  void append(const float* k, const float* v, const Address& key_group, const Address& value_row);
  // Keeps positions before n; throws when some of the dropped ones are
  // quantized already (they cannot be taken back).
  void truncate(int64_t n);
  void reset() { quantized_ = staged_ = 0; }

  int64_t quantized() const { return quantized_; }  // positions before it are in the pages
  int64_t size() const { return quantized_ + staged_; }
  const uint16_t* k() const { return k_.data(); }  // staged rows, kv_dim apart
  const uint16_t* v() const { return v_.data(); }
  uint64_t bytes() const { return (k_.size() + v_.size()) * sizeof(uint16_t); }

 private:
  KvCacheSpec kv_;
  int64_t dim_, quantized_ = 0, staged_ = 0;
  std::vector<uint16_t> k_, v_;  // [residual + group][dim]
  std::vector<float> tmp_;        // one group's keys as f32
};

}  // namespace lmpress
