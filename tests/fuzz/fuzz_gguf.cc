// libFuzzer target: the GGUF header parser, metadata access and the
// tokenizer-metadata reader must reject any input with an Error, never crash.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/gguf.h"
#include "io/tokenizer_files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto g = lmpress::GGUFFile::parse(nullptr, data, size, "fuzz.gguf");
    for (const auto& [k, v] : g.kv) (void)v.to_display();
    for (const auto& t : g.tensors()) {
      // Touch the first and last byte of each tensor: they must lie in the input.
      if (t.nbytes) {
        volatile uint8_t a = t.data[0], b = t.data[t.nbytes - 1];
        (void)a;
        (void)b;
      }
    }
    (void)lmpress::vocab_from_gguf(g);
  } catch (const lmpress::Error&) {
  }
  return 0;
}
