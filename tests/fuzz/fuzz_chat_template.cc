// libFuzzer target: any chat template text is rendered or refused with a
// TemplateError (syntax, unsupported construct, render error, limit), never
// a crash, a hang or unbounded memory.
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/jinja.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const lmpress::jinja::Json ctx = lmpress::jinja::Json::parse(R"({
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi \"there\" é"},
                 {"role": "assistant", "content": "", "tool_calls": [{"id": "call00001", "type": "function",
                  "function": {"name": "f", "arguments": {"a": [1, 2.5, null, true]}}}]},
                 {"role": "tool", "content": "{\"ok\": 1}"}],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "documents": null, "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>"})");
  lmpress::jinja::RenderOptions opt;
  opt.max_output_bytes = 1 << 20;
  opt.max_steps = 200000;
  opt.now = std::tm{};
  try {
    (void)lmpress::jinja::Template(std::string(reinterpret_cast<const char*>(data), size)).render(ctx, opt);
  } catch (const lmpress::jinja::TemplateError&) {
  }
  return 0;
}
