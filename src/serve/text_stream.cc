#include "serve/text_stream.h"

#include <algorithm>

#include "runtime/generate.h"

namespace lmpress::serve {

TextStream::TextStream(std::vector<std::string> stops) : stops_(std::move(stops)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
}

std::string TextStream::push(const std::string& piece) {
  if (stopped_) return {};
  utf8_ += piece;
  held_ += take_complete_utf8(utf8_);
  // The earliest stop string in the held text ends it.
  size_t cut = std::string::npos;
  for (const std::string& s : stops_) cut = std::min(cut, held_.find(s));
  if (cut != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, cut);
    held_.clear();
    utf8_.clear();
    return out;
  }
  // Keep the longest tail that a stop string starts with.
  size_t keep = 0;
  for (const std::string& s : stops_)
    for (size_t n = std::min(s.size() - 1, held_.size()); n > keep; n--)
      if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
        keep = n;
        break;
      }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string TextStream::flush() {
  if (stopped_) return {};
  std::string out = held_ + utf8_;
  held_.clear();
  utf8_.clear();
  return out;
}

}  // namespace lmpress::serve
