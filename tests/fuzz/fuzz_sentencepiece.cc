// libFuzzer target: the tokenizer.model (SentencePiece protobuf) reader must
// reject any input with an Error, never crash; a vocabulary it accepts must
// make a tokenizer that encodes and decodes text (invalid UTF-8 included).
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "io/tokenizer_files.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto v = lmpress::vocab_from_sentencepiece_bytes(std::string(reinterpret_cast<const char*>(data), size),
                                                     "fuzz/tokenizer.model");
    auto tok = lmpress::Tokenizer::create(std::move(v), "fuzz/tokenizer.model");
    for (const char* text : {"Hello world, 123 times!", "caf\xc3\xa9 \xff\xc3 <s>x"})
      (void)tok->decode(tok->encode(text, true, true), true);
  } catch (const lmpress::Error&) {
  }
  return 0;
}
