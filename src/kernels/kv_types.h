// Element types of the KV cache, one row per type (as ggml's type_traits):
// the float types and llama.cpp's block types with ggml's block layouts, so a
// cache type means the same bytes here as in llama-cli's -ctk/-ctv. K and V
// may differ. A cached row (one position's K or V for every KV head) is a
// whole number of blocks per head: a type is usable when its block divides the
// head size.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace lmpress {

enum class KvType { F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL };

struct KvTypeInfo {
  KvType type;
  const char* name;  // as llama.cpp's -ctk/-ctv spell it
  DType dtype;       // the ggml storage type
  int64_t block;     // values per block (1 for the float types)
  int64_t bytes;     // bytes per block
};
const KvTypeInfo& kv_type_info(KvType t);
inline const char* kv_type_name(KvType t) { return kv_type_info(t).name; }
// Bytes holding n values (a multiple of the type's block).
inline int64_t kv_row_bytes(KvType t, int64_t n) {
  const KvTypeInfo& i = kv_type_info(t);
  return n / i.block * i.bytes;
}
inline bool kv_is_quantized(KvType t) { return kv_type_info(t).block > 1; }
// The type named `name` (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1,
// iq4_nl); throws, listing them, on anything else.
KvType parse_kv_type(const std::string& name);
// Every type's name, in the table's order, and the same comma-separated.
std::vector<std::string> kv_type_name_list();
std::string kv_type_names();
// n values (a multiple of the block) of a cached row as floats.
void kv_row_to_f32(KvType t, const void* row, int64_t n, float* out);

// Hadamard rotation of the cache (llama.cpp rotates quantized K and V the
// same way): queries and keys are multiplied by an orthonormal Walsh–Hadamard
// matrix before keys are stored, so scores are unchanged but a key's outlier
// channels are spread over the whole block before it is rounded; values are
// rotated before they are stored and the attention output rotated back.
// Auto: as llama.cpp does (a quantized K or V, head size a multiple of 64).
enum class KvRotate { Auto, On, Off };

// What a forward pass keeps its cache in: both types and the rotation.
struct KvCacheSpec {
  KvType k = KvType::F16, v = KvType::F16;
  KvRotate rotate = KvRotate::Auto;
  KvCacheSpec() = default;
  KvCacheSpec(KvType t) : k(t), v(t) {}  // NOLINT: one type for both is the common case
  KvCacheSpec(KvType k_type, KvType v_type, KvRotate r = KvRotate::Auto) : k(k_type), v(v_type), rotate(r) {}
  // Bytes one position takes in a layer of kv_dim values per row (K + V).
  int64_t bytes_per_position(int64_t kv_dim) const { return kv_row_bytes(k, kv_dim) + kv_row_bytes(v, kv_dim); }
};

// The size of the Hadamard blocks that rotate queries and keys (0: none) and
// values (0: none) for heads of head_dim values: llama.cpp's choice (keys: the
// largest power of two ≥ 64 dividing the head, values: 64) when rotation is
// Auto and the type is quantized, or On (then any power of two dividing the
// head, at most those sizes).
int64_t kv_rotation_k(const KvCacheSpec& s, int64_t head_dim);
int64_t kv_rotation_v(const KvCacheSpec& s, int64_t head_dim);

// Throws, naming the option (--cache-type-k / --cache-type-v), when a type's
// block does not divide head_dim.
void check_kv_spec(const KvCacheSpec& s, int64_t head_dim);

// "f16", or "q8_0/q4_0" when K and V differ.
std::string kv_spec_name(const KvCacheSpec& s);

}  // namespace lmpress
