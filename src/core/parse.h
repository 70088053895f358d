// Numbers inside option values ("r=16", "generate:100,temp=0.8", "FILE:0.5").
#pragma once
#include <cmath>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace lmpress {

// The whole of `text` as a finite number; nullopt when it is empty, has
// anything after the number, or is not finite.
inline std::optional<double> parse_double(const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (used != text.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

// A block number or count written as at most 9 decimal digits, or -1.
inline int64_t parse_block_number(const std::string& s) {
  if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(s);
}

}  // namespace lmpress
