#include "core/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace lmpress {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  tmp_ = path_ + ".tmp." + std::to_string(getpid());
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

void AtomicFile::commit() {
  if (std::fflush(f_) != 0 || fsync(fileno(f_)) != 0)
    fail("{}: flush failed: {}", tmp_, std::strerror(errno));
  std::fclose(f_);
  f_ = nullptr;
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
    fail("{}: cannot rename to {}: {}", tmp_, path_, std::strerror(errno));
  committed_ = true;
}

void write_tensor_bytes(AtomicFile& f, const TensorToWrite& t) {
  if (!t.produce) {
    f.write(t.meta.data, t.meta.nbytes);
    return;
  }
  std::vector<uint8_t> bytes = t.produce();
  if (bytes.size() != t.meta.nbytes)
    fail("internal: tensor {} produced {} bytes, expected {}", t.meta.name, bytes.size(), t.meta.nbytes);
  f.write(bytes.data(), bytes.size());
}

void write_file_atomic(const std::string& path, const std::string& content) {
  AtomicFile f(path);
  f.write(content.data(), content.size());
  f.commit();
}

}  // namespace lmpress
