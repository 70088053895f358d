// Errors: every failure that a user can cause (bad file, bad option) is an
// lmpress::Error with a message that names the file, tensor or field.
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace lmpress {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// Work stopped because its caller asked (a progress callback said no).
class Cancelled : public Error {
 public:
  using Error::Error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// Checked arithmetic for sizes read from files: a corrupt header must give an
// error, never a wrapped-around small allocation.
inline uint64_t checked_mul(uint64_t a, uint64_t b, const char* what) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) fail("{}: size overflows 64 bits", what);
  return r;
}
inline uint64_t checked_add(uint64_t a, uint64_t b, const char* what) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) fail("{}: size overflows 64 bits", what);
  return r;
}

}  // namespace lmpress
