// Numbers inside option values ("r=16", "generate:100,temp=0.8", "FILE:0.5").
#pragma once
#include <cmath>
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

}  // namespace lmpress
