#include "model/kivi_stage.h"

#include <cstring>

#include "core/error.h"
#include "kernels/kivi.h"
#include "kernels/ops.h"

namespace lmpress {

KiviStage::KiviStage(const KvCacheSpec& kv, int64_t kv_dim) : kv_(kv), dim_(kv_dim) {
  if (!kv.kivi()) fail("KiviStage: {} is not a KIVI cache", kv_spec_name(kv));
  const size_t rows = size_t(kv.residual + kv.group);
  k_.resize(rows * size_t(dim_));
  v_.resize(k_.size());
  tmp_.resize(size_t(kv.group * dim_));
}

void KiviStage::append(const float* k, const float* v, const Address& key_group, const Address& value_row) {
  to_f16(k, dim_, &k_[size_t(staged_ * dim_)]);
  to_f16(v, dim_, &v_[size_t(staged_ * dim_)]);
  if (++staged_ < kv_.residual + kv_.group) return;
  const int64_t G = kv_.group;
  const int kbits = kv_type_info(kv_.k).bits, vbits = kv_type_info(kv_.v).bits;
  const int64_t kchunk = kv_.kivi_chunk_bytes(kv_.k), vchunk = kv_.kivi_chunk_bytes(kv_.v);
  from_f16(k_.data(), G * dim_, tmp_.data());
  uint8_t* group = key_group(quantized_);
  for (int64_t c = 0; c < dim_; c++) kivi_quantize(kbits, tmp_.data() + c, dim_, G, group + c * kchunk);
  from_f16(v_.data(), G * dim_, tmp_.data());
  for (int64_t j = 0; j < G; j++) {
    uint8_t* row = value_row(quantized_ + j);
    for (int64_t c = 0; c < dim_; c += G) kivi_quantize(vbits, tmp_.data() + j * dim_ + c, 1, G, row + c / G * vchunk);
  }
  staged_ -= G;
  quantized_ += G;
  std::memmove(k_.data(), k_.data() + G * dim_, size_t(staged_ * dim_) * sizeof(uint16_t));
  std::memmove(v_.data(), v_.data() + G * dim_, size_t(staged_ * dim_) * sizeof(uint16_t));
}

void KiviStage::truncate(int64_t n) {
  if (n >= size()) return;
  if (n < quantized_)
    fail("KIVI cache: positions from {} on are quantized already and cannot be taken back (keep more in f16 with "
         "--kv-residual)",
         quantized_);
  staged_ = n - quantized_;
}

}  // namespace lmpress
