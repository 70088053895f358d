#include "model/kivi_stage.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "kernels/kivi.h"
#include "kernels/ops.h"

namespace lmpress {

KiviStage::KiviStage(const KvCacheSpec& kv, int64_t kv_dim, int64_t history)
    : kv_(kv), dim_(kv_dim), history_(history) {
  if (!kv.kivi()) fail("KiviStage: {} is not a KIVI cache", kv_spec_name(kv));
  if (history < 0) fail("KiviStage: negative history {}", history);
  const size_t rows = reserved_bytes(kv, kv_dim, history) / (2 * sizeof(uint16_t));  // values of K (and of V)
  k_.reserve(rows);
  v_.reserve(rows);
  tmp_.resize(size_t(kv.group * dim_));
}

void KiviStage::row(bool key, int64_t p, const float* fresh, float* out) const {
  if (p >= size_) {
    std::memcpy(out, fresh + (p - size_) * dim_, size_t(dim_) * sizeof(float));
    return;
  }
  from_f16((key ? k_ : v_).data() + (p - start_) * dim_, dim_, out);
}

void KiviStage::quantize(const float* k, const float* v, int64_t n, const Address& key_group,
                         const Address& value_row) {
  if (n < 1) return;
  const int64_t G = kv_.group, end = kv_.kivi_boundary(size_ + n - 1);
  const int kbits = kv_type_info(kv_.k).bits, vbits = kv_type_info(kv_.v).bits;
  const int64_t kchunk = kv_.kivi_chunk_bytes(kv_.k), vchunk = kv_.kivi_chunk_bytes(kv_.v);
  for (; quantized_ < end; quantized_ += G) {
    for (int64_t j = 0; j < G; j++) row(true, quantized_ + j, k, tmp_.data() + j * dim_);
    uint8_t* group = key_group(quantized_);
    for (int64_t c = 0; c < dim_; c++) kivi_quantize(kbits, tmp_.data() + c, dim_, G, group + c * kchunk);
    for (int64_t j = 0; j < G; j++) {
      row(false, quantized_ + j, v, tmp_.data());
      uint8_t* r = value_row(quantized_ + j);
      for (int64_t c = 0; c < dim_; c += G) kivi_quantize(vbits, tmp_.data() + c, 1, G, r + c / G * vchunk);
    }
  }
}

void KiviStage::commit(const float* k, const float* v, int64_t n) {
  if (n < 1) return;
  const int64_t end = size_ + n;
  // Rows a later token may still read in f16, or a rollback of `history`
  // needs: fewer than residual + G + history, so the rows stay in what the
  // constructor reserved.
  const int64_t keep = std::max(start_, kv_.kivi_boundary(std::max<int64_t>(-1, end - 1 - history_)));
  const int64_t drop = std::min(keep, size_) - start_;
  k_.erase(k_.begin(), k_.begin() + drop * dim_);
  v_.erase(v_.begin(), v_.begin() + drop * dim_);
  const int64_t first = std::max(keep, size_);  // the first new position kept
  const size_t old = k_.size();
  k_.resize(old + size_t((end - first) * dim_));
  v_.resize(k_.size());
  to_f16(k + (first - size_) * dim_, (end - first) * dim_, k_.data() + old);
  to_f16(v + (first - size_) * dim_, (end - first) * dim_, v_.data() + old);
  start_ = keep;
  size_ = end;
}

void KiviStage::truncate(int64_t n) {
  if (n >= size_) return;
  if (n < 0 || kv_.kivi_boundary(n - 1) < start_)
    fail("KIVI cache: keeping {} positions needs f16 rows from {} on, and they were quantized and dropped (only {} "
         "positions can be taken back)",
         n, kv_.kivi_boundary(n - 1), history_);
  k_.resize(size_t((n - start_) * dim_));
  v_.resize(k_.size());
  size_ = n;
  quantized_ = std::min(quantized_, kv_.kivi_boundary(n - 1));  // groups past it held dropped positions
}

}  // namespace lmpress
