// libFuzzer target: the safetensors header parser must reject any input with
// an Error, never crash, and every tensor it accepts must lie inside the input.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = lmpress::SafetensorsFile::parse(nullptr, data, size, "fuzz.safetensors");
    for (const auto& t : f.tensors)
      if (t.nbytes) {
        volatile uint8_t a = t.data[0], b = t.data[t.nbytes - 1];
        (void)a;
        (void)b;
      }
  } catch (const lmpress::Error&) {
  }
  return 0;
}
