// Output files are written to "<path>.tmp.<pid>" and renamed over <path> only
// when complete, so an interrupted run never leaves a truncated file behind.
#pragma once
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
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
  // Positional writes, for files whose parts are ready in another order than
  // they are laid out: resize() sets the final size (what is never written
  // reads as zeros), write_at() writes anywhere below it.
  void resize(uint64_t size);
  void write_at(uint64_t offset, const void* data, size_t n);
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
  // marker: what makes an existing `dir` replaceable (check_replaceable_dir).
  explicit AtomicDir(std::string dir, std::string marker = "config.json");
  ~AtomicDir();  // removes the temp directory unless commit() succeeded
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;

  const std::string& path() const { return tmp_; }  // where the files go
  void commit();

 private:
  std::string dir_, tmp_, marker_;
  std::unique_ptr<TempPath> cleanup_;
  bool committed_ = false;
};

struct TensorToWrite;

// A file of tensors (GGUF, safetensors) written in any tensor order: the
// header, which fixes every tensor's offset, is written when it is opened,
// each tensor's bytes when the caller has them (so that a model compressed
// block by block never has to be held whole), and commit() renames it into
// place once every tensor has been written exactly once.
class TensorFileWriter {
 public:
  // metas[i]: name, type, shape and size of the tensor at `offsets[i]`; the file is `size` bytes.
  TensorFileWriter(const std::string& path, const std::string& header, std::vector<Tensor> metas,
                   std::vector<uint64_t> offsets, uint64_t size);
  size_t n_tensors() const { return metas_.size(); }
  const Tensor& meta(size_t i) const { return metas_[i]; }
  bool written(size_t i) const { return written_[i]; }
  // Writes tensor i from its view or producer; its name, type, shape and size must be the header's.
  void write(size_t i, const TensorToWrite& t);
  void commit();

 private:
  AtomicFile f_;
  std::vector<Tensor> metas_;
  std::vector<uint64_t> offsets_;
  std::vector<bool> written_;
};

// Writes a whole small file atomically.
void write_file_atomic(const std::string& path, const std::string& content);

}  // namespace lmpress
