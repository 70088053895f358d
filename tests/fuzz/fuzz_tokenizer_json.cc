// libFuzzer target: the tokenizer.json reader must reject any input with an
// Error, never crash; a vocabulary it accepts must make a tokenizer that
// encodes and decodes text (invalid UTF-8 included) or is refused with an Error.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "io/tokenizer_files.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto v = lmpress::vocab_from_tokenizer_json_text(std::string(reinterpret_cast<const char*>(data), size),
                                                     "fuzz/tokenizer.json");
    auto tok = lmpress::Tokenizer::create(std::move(v), "fuzz/tokenizer.json");
    for (const char* text : {"Hello world, 123 times!", "caf\xc3\xa9 \xff\xc3 <s>x"})
      (void)tok->decode(tok->encode(text, true, true), true);
  } catch (const lmpress::Error&) {
  }
  return 0;
}
