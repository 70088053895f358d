#include "io/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "io/json_file.h"

namespace lmpress {
namespace {

constexpr uint64_t kMaxHeader = 100ull << 20;  // as the reference implementation

std::optional<DType> parse_dtype(const std::string& s) {
  static const std::pair<const char*, DType> kMap[] = {
      {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"F64", DType::F64},
      {"I8", DType::I8},   {"I16", DType::I16}, {"I32", DType::I32},   {"I64", DType::I64},
      {"U8", DType::U8},
  };
  for (auto& [n, t] : kMap)
    if (s == n) return t;
  return std::nullopt;
}

}  // namespace

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F64: return "F64";
    case DType::I8: return "I8";
    case DType::I16: return "I16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U8: return "U8";
    default: fail("dtype {} cannot be stored in safetensors", dtype_name(t));
  }
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto f = MappedFile::open(path);
  return parse(f, f->data(), f->size(), path);
}

SafetensorsFile SafetensorsFile::parse(std::shared_ptr<MappedFile> file, const uint8_t* data, size_t size,
                                       const std::string& name) {
  if (size < 8) fail("{}: not a safetensors file (only {} bytes)", name, size);
  uint64_t n;
  std::memcpy(&n, data, 8);
  if (n > kMaxHeader) fail("{}: not a safetensors file (header length {} is absurd)", name, n);
  if (n > size - 8) fail("{}: truncated safetensors: header of {} bytes, file has {}", name, n, size - 8);
  if (n < 2 || data[8] != '{') fail("{}: not a safetensors file (header is not a JSON object)", name);
  nlohmann::json h;
  try {
    h = nlohmann::json::parse(data + 8, data + 8 + n);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: bad safetensors header JSON: {}", name, e.what());
  }
  if (!h.is_object()) fail("{}: safetensors header is not a JSON object", name);
  const uint8_t* base = data + 8 + n;
  const uint64_t data_size = size - 8 - n;
  SafetensorsFile out;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) fail("{}: __metadata__ is not an object", name);
      for (auto m = it.value().begin(); m != it.value().end(); ++m)
        if (m.value().is_string()) out.metadata[m.key()] = m.value().get<std::string>();
      continue;
    }
    const std::string& tname = it.key();
    const auto& info = it.value();
    if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets"))
      fail("{}: tensor {}: entry needs dtype, shape and data_offsets", name, tname);
    if (!info["dtype"].is_string()) fail("{}: tensor {}: dtype is not a string", name, tname);
    auto dt = parse_dtype(info["dtype"].get<std::string>());
    if (!dt) fail("{}: tensor {}: unsupported dtype {}", name, tname, info["dtype"].get<std::string>());
    const auto& shape = info["shape"];
    const auto& offs = info["data_offsets"];
    if (!shape.is_array() || shape.size() > 8) fail("{}: tensor {}: bad shape", name, tname);
    if (!offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() || !offs[1].is_number_unsigned())
      fail("{}: tensor {}: data_offsets must be two unsigned integers", name, tname);
    Tensor t;
    t.name = tname;
    t.dtype = *dt;
    uint64_t numel = 1;
    for (const auto& d : shape) {
      if (!d.is_number_unsigned()) fail("{}: tensor {}: shape has a non-integer or negative dimension", name, tname);
      uint64_t v = d.get<uint64_t>();
      if (v > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, v, &numel) || numel > uint64_t(INT64_MAX))
        fail("{}: tensor {}: element count overflows", name, tname);
      t.shape.push_back(int64_t(v));
    }
    uint64_t b = offs[0].get<uint64_t>(), e = offs[1].get<uint64_t>();
    uint64_t want = checked_mul(numel, dtype_info(*dt).block_bytes, tname.c_str());
    if (e < b || e - b != want)
      fail("{}: tensor {}: data_offsets [{}, {}) hold {} bytes, shape {} needs {}", name, tname, b, e, e - b,
           shape.dump(), want);
    if (e > data_size) fail("{}: tensor {}: data ends at {}, past the {} data bytes in the file", name, tname, e, data_size);
    t.data = base + b;
    t.nbytes = want;
    t.owner = file;
    ranges.emplace_back(b, e);
    out.tensors.push_back(std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); i++)
    if (ranges[i].first < ranges[i - 1].second) fail("{}: tensors' data ranges overlap", name);
  std::sort(out.tensors.begin(), out.tensors.end(), [](const Tensor& a, const Tensor& b) { return a.data < b.data; });
  return out;
}

std::vector<Tensor> load_safetensors_dir(const std::string& dir) {
  std::string single = dir + "/model.safetensors";
  std::string index = dir + "/model.safetensors.index.json";
  if (file_exists(single)) return SafetensorsFile::open(single).tensors;
  if (!file_exists(index)) fail("{}: no model.safetensors or model.safetensors.index.json", dir);
  nlohmann::json j = read_json_file(index);
  if (!j.contains("weight_map") || !j["weight_map"].is_object()) fail("{}: no weight_map object", index);
  std::set<std::string> shards;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string()) fail("{}: weight_map[{}] is not a file name", index, it.key());
    std::string s = it.value().get<std::string>();
    if (s.find('/') != std::string::npos || s.find("..") != std::string::npos)
      fail("{}: shard name '{}' must be a plain file name", index, s);
    shards.insert(s);
  }
  std::vector<Tensor> all;
  std::set<std::string> names;
  for (const auto& s : shards) {
    for (auto& t : SafetensorsFile::open(dir + "/" + s).tensors) {
      auto w = j["weight_map"].find(t.name);
      if (w == j["weight_map"].end() || *w != s) continue;  // only what the index assigns to this shard
      if (!names.insert(t.name).second) fail("{}: tensor {} appears in two shards", dir, t.name);
      all.push_back(std::move(t));
    }
  }
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it)
    if (!names.count(it.key())) fail("{}: tensor {} is listed in the index but missing from {}", dir, it.key(), it.value().get<std::string>());
  return all;
}

std::unique_ptr<TensorFileWriter> open_safetensors(const std::string& path, const std::vector<Tensor>& metas,
                                                   const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h;
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t off = 0;
  for (const Tensor& t : metas) {
    h[t.name] = {{"dtype", safetensors_dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {off, off + t.nbytes}}};
    off += t.nbytes;
  }
  std::string hs = h.dump();
  hs.append((8 - (hs.size() + 8) % 8) % 8, ' ');  // keep tensor data 8-byte aligned
  std::string header(8, '\0');
  const uint64_t n = hs.size();
  std::memcpy(header.data(), &n, 8);
  header += hs;
  std::vector<Tensor> ms;
  std::vector<uint64_t> offsets;
  uint64_t at = header.size();
  for (const Tensor& t : metas) {
    Tensor m = t;
    m.data = nullptr;
    m.owner.reset();
    ms.push_back(std::move(m));
    offsets.push_back(at);
    at += t.nbytes;
  }
  return std::make_unique<TensorFileWriter>(path, header, std::move(ms), std::move(offsets), at);
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<Tensor> metas;
  for (const auto& t : tensors) metas.push_back(t.meta);
  const auto f = open_safetensors(path, metas, metadata);
  for (size_t i = 0; i < tensors.size(); i++) f->write(i, tensors[i]);
  f->commit();
}

}  // namespace lmpress
