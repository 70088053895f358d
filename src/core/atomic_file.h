// Output files are written to "<path>.tmp.<pid>" and renamed over <path> only
// when complete, so an interrupted run never leaves a truncated file behind.
#pragma once
#include <cstdio>
#include <memory>
#include <string>

#include "core/temp_files.h"

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
  std::unique_ptr<TempPath> cleanup_;
  FILE* f_ = nullptr;
  uint64_t offset_ = 0;
  bool committed_ = false;
};

// A directory output is written as the sibling "<dir>.tmp.<pid>" and swapped
// in whole by commit(): readers never see a mix of old and new files, and an
// existing directory is replaced only when check_replaceable_dir allows it.
class AtomicDir {
 public:
  explicit AtomicDir(std::string dir);
  ~AtomicDir();  // removes the temp directory unless commit() succeeded
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;

  const std::string& path() const { return tmp_; }  // where the files go
  void commit();

 private:
  std::string dir_, tmp_;
  std::unique_ptr<TempPath> cleanup_;
  bool committed_ = false;
};

struct TensorToWrite;
// Writes a tensor's bytes (its view, or what its producer returns).
void write_tensor_bytes(AtomicFile& f, const TensorToWrite& t);

// Writes a whole small file atomically.
void write_file_atomic(const std::string& path, const std::string& content);

}  // namespace lmpress
