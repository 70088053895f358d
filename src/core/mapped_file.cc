#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <map>
#include <mutex>

#include "core/error.h"

namespace lmpress {

namespace {

// A read-only descriptor of a regular file. O_NONBLOCK: opening a FIFO must
// not wait for a writer; it is then refused like a device or a directory.
int open_regular(const std::string& path, struct stat& st) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file (devices, FIFOs and directories are not read)", path);
  }
  return fd;
}

// Live mappings by start address, so that release() only ever touches pages
// of a read-only file mapping (MADV_DONTNEED on heap memory would zero it).
std::mutex& mappings_mutex() {
  static std::mutex m;
  return m;
}
std::map<uintptr_t, size_t>& mappings() {
  static std::map<uintptr_t, size_t> m;
  return m;
}

}  // namespace

void MappedFile::release(const void* p, uint64_t n) {
  if (!p || n == 0) return;
  static const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  uintptr_t lo = reinterpret_cast<uintptr_t>(p), hi = lo + n;
  std::lock_guard<std::mutex> lock(mappings_mutex());
  auto it = mappings().upper_bound(lo);
  if (it == mappings().begin()) return;
  --it;
  const uintptr_t start = it->first, end = start + it->second;
  if (lo >= end) return;
  // Whole pages: the mapping starts on one, and a page shared with a
  // neighbouring tensor is paged in again if that one is still read.
  lo = std::max(start, lo / page * page);
  hi = std::min(end, (hi + page - 1) / page * page);
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  struct stat st {};
  const int fd = open_regular(path, st);
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = size_t(st.st_size);
  if (f->size_ > 0) {
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail("{}: mmap failed: {}", path, std::strerror(e));
    }
    f->data_ = static_cast<const uint8_t*>(p);
    std::lock_guard<std::mutex> lock(mappings_mutex());
    mappings()[reinterpret_cast<uintptr_t>(p)] = f->size_;
  }
  ::close(fd);
  return f;
}

MappedFile::~MappedFile() {
  if (!data_) return;
  {
    std::lock_guard<std::mutex> lock(mappings_mutex());
    mappings().erase(reinterpret_cast<uintptr_t>(data_));
  }
  munmap(const_cast<uint8_t*>(data_), size_);
}

uint64_t max_text_bytes() {
  const char* env = std::getenv("LMPRESS_MAX_TEXT_MB");
  if (!env || !*env) return uint64_t(1) << 30;
  char* end = nullptr;
  const unsigned long long mb = std::strtoull(env, &end, 10);
  if (*end || mb == 0 || mb > (uint64_t(1) << 24)) fail("LMPRESS_MAX_TEXT_MB='{}': expected a size in MiB (1 to 16777216)", env);
  return uint64_t(mb) << 20;
}

std::string read_text_file(const std::string& path) {
  struct stat st {};
  const int fd = open_regular(path, st);
  const uint64_t limit = max_text_bytes();
  if (uint64_t(st.st_size) > limit) {
    ::close(fd);
    fail("{}: {} bytes is more than the text limit of {} MiB (raise it with LMPRESS_MAX_TEXT_MB)", path,
         uint64_t(st.st_size), limit >> 20);
  }
  std::string out(size_t(st.st_size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t r = ::read(fd, out.data() + got, out.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const int e = r < 0 ? errno : 0;
      ::close(fd);
      if (r == 0) fail("{}: the file shrank while being read", path);
      fail("{}: read failed: {}", path, std::strerror(e));
    }
    got += size_t(r);
  }
  ::close(fd);
  return out;
}

std::string read_input_text(const std::string& path) {
  std::string text = read_text_file(path);
  if (text.empty()) fail("{}: the text file is empty", path);
  return text;
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace lmpress
