// Output files are written to "<path>.tmp.<pid>" and renamed over <path> only
// when complete, so an interrupted run never leaves a truncated file behind.
#pragma once
#include <cstdio>
#include <string>

namespace lmpress {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();  // removes the temp file unless commit() succeeded
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write_zeros(size_t n);
  uint64_t offset() const { return offset_; }
  void commit();  // flush, fsync, rename

 private:
  std::string path_, tmp_;
  FILE* f_ = nullptr;
  uint64_t offset_ = 0;
  bool committed_ = false;
};

struct TensorToWrite;
// Writes a tensor's bytes (its view, or what its producer returns).
void write_tensor_bytes(AtomicFile& f, const TensorToWrite& t);

// Writes a whole small file atomically.
void write_file_atomic(const std::string& path, const std::string& content);

}  // namespace lmpress
