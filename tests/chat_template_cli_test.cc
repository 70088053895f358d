// lmpress chat-template: the model's own template (GGUF, Hugging Face
// directory), a built-in or a file; the model's BOS/EOS; errors exit 1.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/mapped_file.h"
#include "io/gguf.h"
#include "runtime/chat_template.h"
#include "test_util.h"

namespace lmpress {
namespace {

namespace fs = std::filesystem;
using test::expect_cli_error;
using test::run_cli;

void write(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

const char* kTemplate = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}"
                        "{% if add_generation_prompt %}[assistant]{% endif %}";

// stories260K.gguf with a chat template in its metadata.
std::string gguf_with_template(const std::string& dir, const std::string& tmpl) {
  const GGUFFile g = GGUFFile::open(test::shared_path("models/stories260K/stories260K.gguf"));
  GGUFWriter w;
  for (const auto& [k, v] : g.kv) w.set(k, v);
  w.set("tokenizer.chat_template", GGUFValue::str(tmpl));
  for (const auto& t : g.tensors()) w.add_tensor(t);
  const std::string out = dir + "/chat.gguf";
  w.write(out);
  return out;
}

TEST(ChatTemplateCli, RendersTheModelsOwnTemplate) {
  if (!test::have_shared("models/stories260K/stories260K.gguf")) GTEST_SKIP() << "no ../shared/models/stories260K";
  const std::string d = test::temp_dir();
  write(d + "/m.json", R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi \"there\""}])");
  const std::string gguf = gguf_with_template(d, kTemplate);
  auto r = run_cli("chat-template " + gguf + " --messages " + d + "/m.json");
  ASSERT_EQ(r.status, 0) << r.out;
  // The model's BOS and EOS texts; exactly the prompt, no newline added.
  EXPECT_EQ(r.out, "<s>[system] Be brief.</s>[user] Hi \"there\"</s>[assistant]");
  r = run_cli("chat-template " + gguf + " --messages " + d + "/m.json --no-generation-prompt");
  EXPECT_EQ(r.out, "<s>[system] Be brief.</s>[user] Hi \"there\"</s>");
  // A built-in or a file instead.
  r = run_cli("chat-template " + gguf + " --messages " + d + "/m.json --template chatml");
  EXPECT_EQ(r.out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi \"there\"<|im_end|>\n<|im_start|>assistant\n");
  write(d + "/t.jinja", "{{ messages | map(attribute='role') | join(',') }}|{{ enable_thinking }}|{{ tools | length }}");
  write(d + "/req.json",
        R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}], "enable_thinking": false})");
  r = run_cli("chat-template " + gguf + " --messages " + d + "/req.json --template " + d + "/t.jinja");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out, "user|False|1");
}

TEST(ChatTemplateCli, HuggingFaceDirectory) {
  if (!test::have_shared("models/lmp-8m/config.json")) GTEST_SKIP() << "no ../shared/models/lmp-8m";
  const std::string d = test::temp_dir() + "/hf";
  fs::create_directories(d);
  for (const auto& e : fs::directory_iterator(test::shared_path("models/lmp-8m")))
    if (e.path().extension() != ".gguf") fs::create_symlink(e.path(), d + "/" + e.path().filename().string());
  auto cfg = nlohmann::json::parse(read_text_file(d + "/tokenizer_config.json"));
  fs::remove(d + "/tokenizer_config.json");
  cfg["chat_template"] = kTemplate;
  write(d + "/tokenizer_config.json", cfg.dump());
  write(d + "/../m.json", R"([{"role": "user", "content": "Hello"}])");
  auto r = run_cli("chat-template " + d + " --messages " + d + "/../m.json");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out, "<s>[user] Hello</s>[assistant]");
}

TEST(ChatTemplateCli, ErrorsExitOne) {
  if (!test::have_shared("models/stories260K/stories260K.gguf")) GTEST_SKIP() << "no ../shared/models/stories260K";
  const std::string d = test::temp_dir();
  const std::string plain = test::shared_path("models/stories260K/stories260K.gguf");
  write(d + "/m.json", R"([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])");
  expect_cli_error("chat-template " + plain + " --messages " + d + "/m.json", "the model has no chat template");
  expect_cli_error("chat-template " + plain + " --messages " + d + "/m.json --template vicuna",
                   "chat template 'vicuna' is neither a built-in name");
  // The template's own raise_exception message.
  expect_cli_error("chat-template " + plain + " --messages " + d + "/m.json --template gemma",
                   "error: chat template: System role not supported (line 1)");
  write(d + "/bad.json", "[{\"role\": \"user\"");
  expect_cli_error("chat-template " + plain + " --messages " + d + "/bad.json --template chatml", "bad.json: not valid JSON");
  write(d + "/norole.json", R"([{"content": "x"}])");
  expect_cli_error("chat-template " + plain + " --messages " + d + "/norole.json --template chatml",
                   "message 0 needs a string \"role\"");
  expect_cli_error("chat-template " + plain + " --messages " + d + "/missing.json --template chatml", "missing.json");
  write(d + "/t.jinja", "{% for m in messages %}\n{{ m.content | frobnicate }}{% endfor %}");
  expect_cli_error("chat-template " + plain + " --messages " + d + "/m.json --template " + d + "/t.jinja",
                   "error: chat template: the filter 'frobnicate' not supported (line 2)");
  write(d + "/syntax.jinja", "{% if %}");
  expect_cli_error("chat-template " + plain + " --messages " + d + "/m.json --template " + d + "/syntax.jinja",
                   "error: chat template: syntax error: expected an expression");
  expect_cli_error("chat-template " + plain, "--messages is required");
}

}  // namespace
}  // namespace lmpress
