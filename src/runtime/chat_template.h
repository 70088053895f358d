// Chat prompts from a model's own chat template (GGUF tokenizer.chat_template,
// or chat_template in a Hugging Face tokenizer_config.json / chat_template.jinja),
// rendered with the variables transformers' apply_chat_template passes, or
// from a built-in template named after the model family.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/jinja.h"

namespace lmpress {

struct ChatRequest {
  jinja::Json messages = jinja::Json::array();  // [{"role": ..., "content": ...}, ...]
  jinja::Json tools;                            // null: no tools (templates see None)
  bool add_generation_prompt = true;
  std::optional<std::string> bos_token, eos_token;  // unset: undefined in the template
  jinja::Json extra = jinja::Json::object();        // further variables (enable_thinking, date_string, ...)
};

// The template's variables for `req`: messages, tools, documents (None),
// add_generation_prompt, bos_token, eos_token, then `extra`.
jinja::Json chat_context(const ChatRequest& req);

// Renders `source` for `req`. Throws jinja::TemplateError.
std::string apply_chat_template(std::string_view source, const ChatRequest& req,
                                const jinja::RenderOptions& options = {});

// Built-in templates, each the Jinja text its model family ships: chatml,
// llama2, llama3, mistral, phi3, gemma, zephyr.
const std::vector<std::string>& builtin_chat_template_names();
std::optional<std::string> builtin_chat_template(std::string_view name);

struct ModelChatTemplate {
  std::string source;
  std::string origin;  // where it was found, for messages
};

// The template a model ships (`model` as load_model takes it): a GGUF file's
// tokenizer.chat_template, or beside a Hugging Face model chat_template.jinja,
// else tokenizer_config.json's chat_template (a string, or a list of named
// templates: "default"). With `tool_use`, a template named tool_use
// (tokenizer.chat_template.tool_use in GGUF) is preferred, as transformers
// and llama.cpp choose it when the request has tools. nullopt when none.
std::optional<ModelChatTemplate> model_chat_template(const std::string& model, bool tool_use = false);

// The template for a request: `choice` is a built-in name or a template file;
// empty means the model's own. Fails naming what is missing.
ModelChatTemplate select_chat_template(const std::string& model, const std::string& choice, bool tool_use = false);

// Parses a messages file: a JSON array of messages, or an object with
// "messages" (and optionally "tools" and "add_generation_prompt"; other
// members become template variables). Each message needs a string "role".
ChatRequest chat_request_from_json(const std::string& text, const std::string& source);

}  // namespace lmpress
