#include "core/atomic_file.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "core/path_guard.h"
#include "core/tensor.h"

namespace lmpress {

namespace fs = std::filesystem;

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  tmp_ = path_ + ".tmp." + std::to_string(getpid());
  cleanup_ = std::make_unique<TempPath>(tmp_, false);
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) fail("{}: cannot create: {}", tmp_, std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (f_) std::fclose(f_);
  if (!committed_) std::remove(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t n) {
  if (n && std::fwrite(data, 1, n, f_) != n) fail("{}: write failed: {}", tmp_, std::strerror(errno));
  offset_ += n;
}

void AtomicFile::write_zeros(size_t n) {
  static const std::vector<char> zeros(4096, 0);
  while (n) {
    size_t k = std::min(n, zeros.size());
    write(zeros.data(), k);
    n -= k;
  }
}

void AtomicFile::resize(uint64_t size) {
  if (std::fflush(f_) != 0 || ftruncate(fileno(f_), off_t(size)) != 0)
    fail("{}: cannot set its size to {} bytes: {}", tmp_, size, std::strerror(errno));
}

void AtomicFile::write_at(uint64_t offset, const void* data, size_t n) {
  if (std::fflush(f_) != 0) fail("{}: write failed: {}", tmp_, std::strerror(errno));
  const auto* p = static_cast<const uint8_t*>(data);
  while (n) {
    const ssize_t w = ::pwrite(fileno(f_), p, n, off_t(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("{}: write failed: {}", tmp_, w < 0 ? std::strerror(errno) : "nothing written");
    p += w, offset += uint64_t(w), n -= size_t(w);
  }
}

void AtomicFile::commit() {
  if (std::fflush(f_) != 0 || fsync(fileno(f_)) != 0)
    fail("{}: flush failed: {}", tmp_, std::strerror(errno));
  std::fclose(f_);
  f_ = nullptr;
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
    fail("{}: cannot rename to {}: {}", tmp_, path_, std::strerror(errno));
  committed_ = true;
}

AtomicDir::AtomicDir(std::string dir, std::string marker) : dir_(std::move(dir)), marker_(std::move(marker)) {
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
  check_replaceable_dir("output", dir_, marker_);
  tmp_ = dir_ + ".tmp." + std::to_string(getpid());
  std::error_code ec;
  fs::remove_all(tmp_, ec);
  cleanup_ = std::make_unique<TempPath>(tmp_, true);
  if (!fs::create_directory(tmp_, ec)) fail("{}: cannot create: {}", tmp_, ec ? ec.message() : "exists");
}

AtomicDir::~AtomicDir() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(tmp_, ec);
}

void AtomicDir::commit() {
  std::error_code ec;
  if (!fs::exists(dir_, ec)) {
    if (std::rename(tmp_.c_str(), dir_.c_str()) != 0)
      fail("{}: cannot rename to {}: {}", tmp_, dir_, std::strerror(errno));
  } else {
    check_replaceable_dir("output", dir_, marker_);
    // One atomic swap where the file system has it; else two renames, with
    // the old directory kept aside until the new one is in place.
    if (::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, dir_.c_str(), RENAME_EXCHANGE) != 0) {
      const std::string old = dir_ + ".old." + std::to_string(getpid());
      if (std::rename(dir_.c_str(), old.c_str()) != 0)
        fail("{}: cannot move the old directory aside: {}", dir_, std::strerror(errno));
      if (std::rename(tmp_.c_str(), dir_.c_str()) != 0) {
        const int e = errno;
        std::rename(old.c_str(), dir_.c_str());
        fail("{}: cannot rename to {}: {}", tmp_, dir_, std::strerror(e));
      }
      fs::remove_all(old, ec);
    } else {
      fs::remove_all(tmp_, ec);  // now the old directory
    }
  }
  committed_ = true;
}

TensorFileWriter::TensorFileWriter(const std::string& path, const std::string& header, std::vector<Tensor> metas,
                                   std::vector<uint64_t> offsets, uint64_t size)
    : f_(path), metas_(std::move(metas)), offsets_(std::move(offsets)), written_(metas_.size(), false) {
  f_.write(header.data(), header.size());
  f_.resize(size);
}

void TensorFileWriter::write(size_t i, const TensorToWrite& t) {
  const Tensor& m = metas_[i];
  if (written_[i]) fail("internal: tensor {} written twice", m.name);
  if (t.meta.name != m.name || t.meta.dtype != m.dtype || t.meta.shape != m.shape || t.meta.nbytes != m.nbytes)
    fail("internal: tensor {} is now {} {} ({} bytes), not the {} {} ({} bytes) its header gives", m.name,
         dtype_name(t.meta.dtype), t.meta.shape_str(), t.meta.nbytes, dtype_name(m.dtype), m.shape_str(), m.nbytes);
  if (!t.produce) {
    f_.write_at(offsets_[i], t.meta.data, t.meta.nbytes);
  } else {
    const std::vector<uint8_t> bytes = t.produce();
    if (bytes.size() != m.nbytes)
      fail("internal: tensor {} produced {} bytes, expected {}", m.name, bytes.size(), m.nbytes);
    f_.write_at(offsets_[i], bytes.data(), bytes.size());
  }
  written_[i] = true;
}

void TensorFileWriter::commit() {
  for (size_t i = 0; i < metas_.size(); i++)
    if (!written_[i]) fail("internal: tensor {} was never written", metas_[i].name);
  f_.commit();
}

void write_file_atomic(const std::string& path, const std::string& content) {
  AtomicFile f(path);
  f.write(content.data(), content.size());
  f.commit();
}

}  // namespace lmpress
