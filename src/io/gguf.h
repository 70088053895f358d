// GGUF (v2/v3) reading and writing: metadata of every value type, including
// nested arrays, tensor infos, alignment. Spec: ggml/docs/gguf.md.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/atomic_file.h"
#include "core/mapped_file.h"
#include "core/tensor.h"

namespace lmpress {

enum class GGUFType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* gguf_type_name(GGUFType t);

// One metadata value. Arrays hold values of a single element type (which may
// itself be ARRAY); `elem_type` records it so that empty arrays round-trip.
struct GGUFValue {
  GGUFType type = GGUFType::UINT32;
  std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<GGUFValue>> v;
  GGUFType elem_type = GGUFType::UINT32;  // for ARRAY

  static GGUFValue u32(uint32_t x) { return {GGUFType::UINT32, uint64_t(x)}; }
  static GGUFValue i32(int32_t x) { return {GGUFType::INT32, int64_t(x)}; }
  static GGUFValue u64(uint64_t x) { return {GGUFType::UINT64, x}; }
  static GGUFValue f32(float x) { return {GGUFType::FLOAT32, double(x)}; }
  static GGUFValue boolean(bool x) { return {GGUFType::BOOL, x}; }
  static GGUFValue str(std::string s) { return {GGUFType::STRING, std::move(s)}; }
  static GGUFValue array(GGUFType elem, std::vector<GGUFValue> items);
  static GGUFValue str_array(const std::vector<std::string>& items);
  static GGUFValue f32_array(const std::vector<float>& items);
  static GGUFValue i32_array(const std::vector<int32_t>& items);

  bool is_int() const;
  bool is_number() const { return is_int() || type == GGUFType::FLOAT32 || type == GGUFType::FLOAT64; }
  int64_t as_int() const;  // any integer type or bool
  double as_double() const;
  const std::string& as_string() const;
  const std::vector<GGUFValue>& as_array() const;
  std::string to_display(size_t max_items = 8) const;
};

struct GGUFTensorInfo {
  std::string name;
  std::vector<uint64_t> ne;  // ggml order: ne[0] is the innermost (row length)
  uint32_t ggml_type = 0;
  uint64_t offset = 0;       // relative to the data section
};

class GGUFFile {
 public:
  // Parses and validates the whole header; tensors stay in the mapping.
  static GGUFFile open(const std::string& path);
  // Parses an in-memory buffer (used by the fuzzer); `name` is used in errors.
  static GGUFFile parse(std::shared_ptr<MappedFile> file, const uint8_t* data, size_t size,
                        const std::string& name);

  uint32_t version = 0;
  uint64_t alignment = 32;
  uint64_t data_offset = 0;
  std::vector<std::pair<std::string, GGUFValue>> kv;  // in file order
  std::vector<GGUFTensorInfo> tensor_infos;
  std::string path;

  const GGUFValue* find(const std::string& key) const;
  // Typed lookups; the *_req variants throw naming the key and file.
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;
  std::optional<bool> get_bool(const std::string& key) const;
  int64_t req_int(const std::string& key) const;
  std::string req_string(const std::string& key) const;

  // Tensor views into the mapping, shapes converted to outermost-first.
  std::vector<Tensor> tensors() const;

 private:
  std::shared_ptr<MappedFile> file_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
};

// Writer: collects metadata and tensors, then streams them into an AtomicFile.
class GGUFWriter {
 public:
  void set(const std::string& key, GGUFValue v);
  // Adds a tensor; its bytes are read from t.data (or produced) at write() time.
  void add_tensor(const Tensor& t);
  void add_tensor(TensorToWrite t);
  void write(const std::string& path, uint64_t alignment = 32) const;
  // The file with its header written; tensor i (in the order added) is then
  // written by the caller, from the TensorToWrite it has by then.
  std::unique_ptr<TensorFileWriter> open(const std::string& path, uint64_t alignment = 32) const;
  const std::vector<TensorToWrite>& tensors() const { return tensors_; }

 private:
  std::vector<std::pair<std::string, GGUFValue>> kv_;
  std::vector<TensorToWrite> tensors_;
};

}  // namespace lmpress
