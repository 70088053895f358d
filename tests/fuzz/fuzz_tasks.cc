// libFuzzer target: a JSONL task file must be read or rejected with an Error
// naming the line, never crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "eval/tasks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)lmpress::parse_task_text(std::string(reinterpret_cast<const char*>(data), size), "fuzz.jsonl", "fuzz");
  } catch (const lmpress::Error&) {
  }
  return 0;
}
