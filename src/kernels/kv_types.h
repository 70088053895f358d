// Element types of the KV cache, one row per type (as ggml's type_traits):
// the float types and llama.cpp's block types with ggml's block layouts, so a
// cache type means the same bytes here as in llama-cli's -ctk/-ctv. K and V
// may differ. A cached row (one position's K or V for every KV head) is a
// whole number of blocks per head: a type is usable when its block divides the
// head size.
//
// And KIVI (Liu et al., 2024: kivi4, kivi2): keys quantized per channel over
// groups of G consecutive positions, values per position over groups of G
// channels, both asymmetric (an f16 scale and minimum per group, kernels/
// kivi.h), with the newest positions kept in f16 until their key group is
// complete and older than the residual window (model/kivi_stage.h). A key
// group is no row: KIVI K is stored per group of positions, not per row.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace lmpress {

enum class KvType { F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, KIVI4, KIVI2 };

struct KvTypeInfo {
  KvType type;
  const char* name;  // as llama.cpp's -ctk/-ctv spell it
  DType dtype;       // the ggml storage type (F16 for KIVI's staged rows)
  int64_t block;     // values per block (1 for the float types; 0 for KIVI: the group, a parameter)
  int64_t bytes;     // bytes per block (KIVI: 0)
  int bits;          // KIVI: bits per value (else 0)
};
const KvTypeInfo& kv_type_info(KvType t);
inline const char* kv_type_name(KvType t) { return kv_type_info(t).name; }
// Bytes holding n values (a multiple of the type's block); not for KIVI
// (KvCacheSpec::row_bytes knows its group).
int64_t kv_row_bytes(KvType t, int64_t n);
inline bool kv_is_kivi(KvType t) { return kv_type_info(t).bits > 0; }
inline bool kv_is_quantized(KvType t) { return kv_type_info(t).block != 1; }
// The type named `name` (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1,
// iq4_nl, kivi4, kivi2); throws, listing them, on anything else.
KvType parse_kv_type(const std::string& name);
// Every type's name, in the table's order, and the same comma-separated.
std::vector<std::string> kv_type_name_list();
std::string kv_type_names();
// n values (a multiple of the block) of a cached row as floats; not for KIVI.
void kv_row_to_f32(KvType t, const void* row, int64_t n, float* out);

// Hadamard rotation of the cache (llama.cpp rotates quantized K and V the
// same way): queries and keys are multiplied by an orthonormal Walsh–Hadamard
// matrix before keys are stored, so scores are unchanged but a key's outlier
// channels are spread over the whole block before it is rounded; values are
// rotated before they are stored and the attention output rotated back.
// Auto: as llama.cpp does (a quantized K or V, KIVI too, head size a
// multiple of 64).
enum class KvRotate { Auto, On, Off };

// What a forward pass keeps its cache in: both types, the rotation and KIVI's
// group and residual window.
struct KvCacheSpec {
  KvType k = KvType::F16, v = KvType::F16;
  KvRotate rotate = KvRotate::Auto;
  int64_t group = 64;    // KIVI: positions per key group, channels per value group
  int64_t residual = 0;  // KIVI: newest positions kept in f16 besides the incomplete key group
  KvCacheSpec() = default;
  KvCacheSpec(KvType t) : k(t), v(t) {}  // NOLINT: one type for both is the common case
  KvCacheSpec(KvType k_type, KvType v_type, KvRotate r = KvRotate::Auto) : k(k_type), v(v_type), rotate(r) {}

  bool kivi() const { return kv_is_kivi(k); }  // then V is KIVI too (check_kv_spec)
  // Bytes of one KIVI group: G values with their scale and minimum.
  int64_t kivi_chunk_bytes(KvType t) const { return 4 + group * kv_type_info(t).bits / 8; }
  // Bytes of a row of n values of t (V rows, and K rows of the row types).
  int64_t row_bytes(KvType t, int64_t n) const {
    return kv_is_kivi(t) ? n / group * kivi_chunk_bytes(t) : kv_row_bytes(t, n);
  }
  // Bytes of a KIVI key group: G positions of n channels (channel by channel).
  int64_t key_group_bytes(int64_t n) const { return n * kivi_chunk_bytes(k); }
  // Bytes of `positions` positions (a multiple of the group for KIVI) of rows of n values.
  int64_t k_bytes(int64_t positions, int64_t n) const {
    return kivi() ? positions / group * key_group_bytes(n) : positions * row_bytes(k, n);
  }
  int64_t v_bytes(int64_t positions, int64_t n) const { return positions * row_bytes(v, n); }
  // KIVI: the token at position p reads the positions before this quantized,
  // the rest in f16: whole groups, all but the newest `residual` positions
  // and the group they start in (0 for p < 0).
  int64_t kivi_boundary(int64_t p) const {
    const int64_t n = p + 1 - residual;
    return n <= 0 ? 0 : n / group * group;
  }
  // Positions a cache of n positions is allocated for: a whole number of KIVI groups.
  int64_t round_positions(int64_t n) const { return kivi() ? (n + group - 1) / group * group : n; }
  // Bytes one position takes, on average, in a layer of kv_dim values per row (K + V).
  double bytes_per_position(int64_t kv_dim) const {
    const int64_t g = kivi() ? group : 1;
    return double(k_bytes(g, kv_dim) + v_bytes(g, kv_dim)) / double(g);
  }
  // Bits per cached value (K and V together; KIVI's staged f16 rows not counted).
  double bits_per_value(int64_t kv_dim) const { return bytes_per_position(kv_dim) * 8 / double(2 * kv_dim); }
};

// The size of the Hadamard blocks that rotate queries and keys (0: none) and
// values (0: none) for heads of head_dim values: llama.cpp's choice (keys: the
// largest power of two ≥ 64 dividing the head, values: 64) when rotation is
// Auto and the type is quantized, or On (then any power of two dividing the
// head, at most those sizes).
int64_t kv_rotation_k(const KvCacheSpec& s, int64_t head_dim);
int64_t kv_rotation_v(const KvCacheSpec& s, int64_t head_dim);

// Throws, naming the option (--cache-type-k / --cache-type-v, --kv-group,
// --kv-residual), when a type's block does not divide head_dim, when only one
// of K and V is KIVI, or KIVI's group is not a positive even divisor of the
// head size of at most 256, or the residual window is negative or over 4096.
void check_kv_spec(const KvCacheSpec& s, int64_t head_dim);

// Throws, naming the option, when a KIVI group or residual window is larger
// than a context of n_ctx positions.
void check_kv_context(const KvCacheSpec& s, int64_t n_ctx);

// "f16", or "q8_0/q4_0" when K and V differ.
std::string kv_spec_name(const KvCacheSpec& s);

}  // namespace lmpress
