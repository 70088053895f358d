#include "runtime/chat_template.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "io/gguf.h"
#include "test_util.h"

namespace lmpress {
namespace {

using jinja::Json;

ChatRequest request(const std::string& messages, bool gen = true) {
  ChatRequest r;
  r.messages = Json::parse(messages);
  r.add_generation_prompt = gen;
  r.bos_token = "<s>";
  r.eos_token = "</s>";
  return r;
}

const char* kSystemUser = R"([{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hi"}])";
const char* kUserAssistant = R"([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " Hello. "}])";

std::string builtin(const std::string& name, const char* messages, bool gen = true) {
  return apply_chat_template(*builtin_chat_template(name), request(messages, gen));
}

TEST(ChatTemplate, BuiltinsRenderTheirFamiliesPrompts) {
  EXPECT_EQ(builtin_chat_template_names(),
            (std::vector<std::string>{"chatml", "llama2", "llama3", "mistral", "phi3", "gemma", "zephyr"}));
  EXPECT_EQ(builtin("chatml", kSystemUser),
            "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(builtin("chatml", kUserAssistant, false),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n Hello. <|im_end|>\n");
  EXPECT_EQ(builtin("llama2", kSystemUser), "<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHi [/INST]");
  EXPECT_EQ(builtin("llama2", kUserAssistant), "<s>[INST] Hi [/INST] Hello. </s>");
  EXPECT_EQ(builtin("llama3", kSystemUser),
            "<s><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(builtin("mistral", kUserAssistant), "<s>[INST] Hi [/INST] Hello. </s>");
  EXPECT_EQ(builtin("phi3", kSystemUser), "<|system|>\nYou are helpful.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n");
  EXPECT_EQ(builtin("phi3", kUserAssistant, false), "<|user|>\nHi<|end|>\n<|assistant|>\n Hello. <|end|>\n</s>");
  EXPECT_EQ(builtin("gemma", kUserAssistant),
            "<s><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_EQ(builtin("zephyr", kSystemUser), "<|system|>\nYou are helpful.</s>\n<|user|>\nHi</s>\n<|assistant|>\n");
  EXPECT_FALSE(builtin_chat_template("vicuna"));
}

TEST(ChatTemplate, BuiltinsRaiseTheirOwnErrors) {
  try {
    builtin("gemma", kSystemUser);
    FAIL() << "gemma accepted a system message";
  } catch (const jinja::TemplateError& e) {
    EXPECT_EQ(int(e.kind), int(jinja::TemplateError::Kind::Raised));
    EXPECT_EQ(e.detail, "System role not supported");
  }
  try {
    builtin("mistral", R"([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])");
    FAIL() << "mistral accepted two user turns in a row";
  } catch (const jinja::TemplateError& e) {
    EXPECT_EQ(e.detail, "Conversation roles must alternate user/assistant/user/assistant/...");
  }
}

TEST(ChatTemplate, ContextHasTransformersVariables) {
  ChatRequest r = request(kSystemUser);
  r.extra["enable_thinking"] = false;
  const Json c = chat_context(r);
  EXPECT_TRUE(c["tools"].is_null());
  EXPECT_TRUE(c["documents"].is_null());
  EXPECT_EQ(c["add_generation_prompt"], true);
  EXPECT_EQ(c["bos_token"], "<s>");
  EXPECT_EQ(c["enable_thinking"], false);
  // tools is None (defined), an unset BOS token is undefined.
  r.bos_token.reset();
  EXPECT_EQ(apply_chat_template("{{ tools is defined }}{{ tools is none }}{{ bos_token is defined }}", r),
            "TrueTrueFalse");
}

TEST(ChatTemplate, MessagesFiles) {
  ChatRequest r = chat_request_from_json(R"([{"role": "user", "content": "x"}])", "m.json");
  EXPECT_EQ(r.messages.size(), 1u);
  EXPECT_TRUE(r.tools.is_null());
  r = chat_request_from_json(
      R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}], "enable_thinking": true})",
      "m.json");
  EXPECT_EQ(r.tools.size(), 1u);
  EXPECT_EQ(r.extra["enable_thinking"], true);
  test::expect_error([] { chat_request_from_json("[{\"role\": ", "m.json"); }, "m.json: not valid JSON");
  test::expect_error([] { chat_request_from_json(R"([{"content": "x"}])", "m.json"); },
                     "m.json: message 0 needs a string \"role\"");
  test::expect_error([] { chat_request_from_json(R"({"tools": []})", "m.json"); }, "missing field \"messages\"");
  test::expect_error([] { chat_request_from_json(R"({"messages": [], "bos_token": "x"})", "m.json"); },
                     "\"bos_token\" is set by lmpress");
  test::expect_error([] { chat_request_from_json("42", "m.json"); }, "expected a JSON array of messages");
}

void write(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

TEST(ChatTemplate, TemplateFromHuggingFaceDirectory) {
  const std::string d = test::temp_dir();
  write(d + "/config.json", "{}");
  EXPECT_FALSE(model_chat_template(d));
  write(d + "/tokenizer_config.json", R"({"chat_template": "A{{ messages | length }}"})");
  ASSERT_TRUE(model_chat_template(d));
  EXPECT_EQ(model_chat_template(d)->source, "A{{ messages | length }}");
  EXPECT_EQ(model_chat_template(d + "/config.json")->source, "A{{ messages | length }}");
  // Named templates: "default", or "tool_use" when the request has tools.
  write(d + "/tokenizer_config.json",
        R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})");
  EXPECT_EQ(model_chat_template(d)->source, "D");
  EXPECT_EQ(model_chat_template(d, true)->source, "T");
  // chat_template.jinja beside it wins, as in transformers.
  write(d + "/chat_template.jinja", "J");
  EXPECT_EQ(model_chat_template(d)->source, "J");
  EXPECT_EQ(select_chat_template(d, "").source, "J");
  EXPECT_EQ(select_chat_template(d, "chatml").source, *builtin_chat_template("chatml"));
  write(d + "/mine.jinja", "M");
  EXPECT_EQ(select_chat_template(d, d + "/mine.jinja").source, "M");
  test::expect_error([&] { select_chat_template(d, "nonesuch"); },
                     "chat template 'nonesuch' is neither a built-in name (chatml, llama2, llama3, mistral, phi3, "
                     "gemma, zephyr) nor a file");
  std::filesystem::remove(d + "/chat_template.jinja");
  write(d + "/tokenizer_config.json", R"({"chat_template": 7})");
  test::expect_error([&] { model_chat_template(d); }, "chat_template must be a string or a list of named templates");
  write(d + "/tokenizer_config.json", R"({"chat_template": [{"name": "tool_use", "template": "T"}]})");
  test::expect_error([&] { model_chat_template(d); }, "lists no template named \"default\"");
}

TEST(ChatTemplate, TemplateFromGguf) {
  const std::string d = test::temp_dir();
  GGUFWriter w;
  w.set("general.architecture", GGUFValue::str("llama"));
  w.write(d + "/none.gguf");
  EXPECT_FALSE(model_chat_template(d + "/none.gguf"));
  test::expect_error([&] { select_chat_template(d + "/none.gguf", ""); }, "the model has no chat template");
  GGUFWriter w2;
  w2.set("tokenizer.chat_template", GGUFValue::str("G{{ bos_token }}"));
  w2.set("tokenizer.chat_template.tool_use", GGUFValue::str("GT"));
  w2.write(d + "/t.gguf");
  EXPECT_EQ(model_chat_template(d + "/t.gguf")->source, "G{{ bos_token }}");
  EXPECT_EQ(model_chat_template(d + "/t.gguf", true)->source, "GT");
  GGUFWriter w3;
  w3.set("tokenizer.chat_template", GGUFValue::u32(3));
  w3.write(d + "/bad.gguf");
  test::expect_error([&] { model_chat_template(d + "/bad.gguf"); }, "tokenizer.chat_template has type u32, not str");
}

}  // namespace
}  // namespace lmpress
