// safetensors reading (single file and sharded via model.safetensors.index.json)
// and writing. Format: u64 header length, JSON header, raw little-endian data.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "core/mapped_file.h"
#include "core/tensor.h"

namespace lmpress {

struct SafetensorsFile {
  std::vector<Tensor> tensors;  // views into the mapping, file order by offset
  std::map<std::string, std::string> metadata;

  static SafetensorsFile open(const std::string& path);
  static SafetensorsFile parse(std::shared_ptr<MappedFile> file, const uint8_t* data, size_t size,
                               const std::string& name);
};

// All tensors of an HF directory: model.safetensors or the shards that
// model.safetensors.index.json lists.
std::vector<Tensor> load_safetensors_dir(const std::string& dir);

// Writes tensors (F32/F16/BF16/I32/...) to one safetensors file atomically.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
// The file with its header written for tensors of these names, types and
// shapes; tensor i is then written by the caller.
std::unique_ptr<TensorFileWriter> open_safetensors(const std::string& path, const std::vector<Tensor>& metas,
                                                   const std::map<std::string, std::string>& metadata = {});

const char* safetensors_dtype_name(DType t);

}  // namespace lmpress
