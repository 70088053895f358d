// The newest positions of a KIVI cache (kernels/kivi.h), kept as f16 rows for
// one sequence and layer. A key group can only be quantized once all G of its
// positions exist, and KIVI keeps the most recent `residual` positions in full
// precision besides, so the token at position p reads the positions before
// KvCacheSpec::kivi_boundary(p) quantized and the rest in f16 — a rule of
// positions alone, so that a prompt run in one batch, token by token, or
// mixed with other sequences' tokens computes the same values, and a
// speculative draft's rejected positions can be taken back.
//
// One forward pass over new positions size()..size()+n−1 runs quantize() (the
// groups its last token reads quantized go to the pages, from the staged rows
// and the new rows), then attention (staged rows from start(), the new rows
// from the activations), then commit() (the new rows staged, rows no later
// token reads in f16 dropped, except `history` positions kept for rollback).
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

  // history: positions a truncate() may take back.
  KiviStage(const KvCacheSpec& kv, int64_t kv_dim, int64_t history = 0);
  // k, v: the rows of the n new positions (kv_dim floats each, already
  // rounded to f16 values). Quantizes every group before the last new
  // position's boundary not quantized yet.
  void quantize(const float* k, const float* v, int64_t n, const Address& key_group, const Address& value_row);
  // Takes the n new positions in (after attention has read them).
  void commit(const float* k, const float* v, int64_t n);
  // Keeps positions before n; throws when that needs rows already dropped
  // (more than `history` positions back).
  void truncate(int64_t n);
  void reset() { start_ = size_ = quantized_ = 0; }

  int64_t start() const { return start_; }  // the first staged position
  int64_t size() const { return size_; }    // positions appended
  const uint16_t* k() const { return k_.data(); }  // staged rows start().., kv_dim apart
  const uint16_t* v() const { return v_.data(); }
  // What the stage holds in memory: residual + G + history rows of K and V.
  uint64_t bytes() const { return (k_.capacity() + v_.capacity()) * sizeof(uint16_t); }
  // What the constructor reserves for those rows (memory budgets count it before any stage exists).
  static uint64_t reserved_bytes(const KvCacheSpec& kv, int64_t kv_dim, int64_t history = 0) {
    return uint64_t(kv.residual + kv.group + history) * uint64_t(kv_dim) * 2 * sizeof(uint16_t);
  }

 private:
  // Position p's K (V) row as floats: staged, or new row p − size_.
  void row(bool key, int64_t p, const float* fresh, float* out) const;

  KvCacheSpec kv_;
  int64_t dim_, history_, start_ = 0, size_ = 0, quantized_ = 0;  // pages hold whole groups before quantized_
  std::vector<uint16_t> k_, v_;                                    // staged rows
  std::vector<float> tmp_;
};

}  // namespace lmpress
