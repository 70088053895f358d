// A request's generated text as its tokens arrive: pieces are released only
// as complete UTF-8, and never while they could still be the start of a stop
// string, so a streamed response never shows text a stop string removes.
#pragma once
#include <string>
#include <vector>

namespace lmpress::serve {

class TextStream {
 public:
  explicit TextStream(std::vector<std::string> stops = {});
  // Appends a token's bytes; returns the text that can be sent now. After a
  // stop string is seen, stopped() is true and nothing more is returned (the
  // text before it has been returned).
  std::string push(const std::string& piece);
  // The text held back, at the end of the request (an incomplete UTF-8
  // sequence is sent as is).
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string utf8_, held_;
  bool stopped_ = false;
};

}  // namespace lmpress::serve
