// Read-only memory mapping of a whole file; weights are used in place.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace lmpress {

class MappedFile {
 public:
  // Maps `path`; throws Error naming the file if it cannot be opened.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Drops this process's resident pages of [p, p + n), clipped to a live
  // mapping (no-op for memory that is not one): pages of a mapping that were
  // read count in the RSS until unmapped, so a compressor that has finished
  // with a block's weights gives them back. The bytes stay the file's: a
  // later read pages them in again from the page cache or the disk.
  static void release(const void* p, uint64_t n);

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// Reads a whole regular file into a string; throws naming the file for a
// device, FIFO or directory, and for a file over max_text_bytes().
std::string read_text_file(const std::string& path);
// The same, failing on an empty file (a text to tokenize: -f, calibration).
std::string read_input_text(const std::string& path);
// 1 GiB, or $LMPRESS_MAX_TEXT_MB.
uint64_t max_text_bytes();
bool file_exists(const std::string& path);
bool is_directory(const std::string& path);

}  // namespace lmpress
