// libFuzzer target: a Hugging Face config.json (hyperparameters and a GPTQ
// quantization_config) must be read or rejected with an Error, never crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "io/json_file.h"
#include "model/load_gptq.h"
#include "model/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto c = lmpress::hf_config_from_text(text, "fuzz/config.json");
    (void)c.rope_inv_freqs();
    const auto j = lmpress::parse_json(text, "fuzz/config.json");
    if (j.contains("quantization_config")) (void)lmpress::gptq_spec_from_config(j["quantization_config"], "fuzz/config.json");
  } catch (const lmpress::Error&) {
  }
  return 0;
}
