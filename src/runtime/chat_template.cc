#include "runtime/chat_template.h"

#include <filesystem>
#include <utility>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/gguf.h"
#include "io/hub.h"
#include "io/json_file.h"

namespace lmpress {

namespace {

// The templates as their models' tokenizer_config.json holds them (Jinja
// escapes such as \n are the template's own).
const std::vector<std::pair<std::string, std::string>>& builtins() {
  static const std::vector<std::pair<std::string, std::string>> kTemplates = {
      // ChatML (OpenHermes, Qwen's predecessors, SmolLM's instruct models).
      {"chatml",
       R"({% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %})"},
      // meta-llama/Llama-2-7b-chat-hf
      {"llama2",
       R"({% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %})"},
      // meta-llama/Meta-Llama-3-8B-Instruct
      {"llama3",
       R"({% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %})"},
      // mistralai/Mistral-7B-Instruct-v0.1
      {"mistral",
       R"({{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %})"},
      // microsoft/Phi-3.5-mini-instruct
      {"phi3",
       R"({% for message in messages %}{% if message['role'] == 'system' and message['content'] %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %})"},
      // google/gemma-2-2b-it (and gemma-7b-it)
      {"gemma",
       R"({{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %})"},
      // HuggingFaceH4/zephyr-7b-beta
      {"zephyr",
       "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + "
       "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token "
       "}}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token "
       "}}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% "
       "endfor %}"},
  };
  return kTemplates;
}

bool is_file(const std::string& p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec);
}

// tokenizer_config.json's chat_template: a string, or [{"name", "template"}, ...].
std::optional<std::string> config_template(const nlohmann::json& cfg, const std::string& path, bool tool_use) {
  auto it = cfg.find("chat_template");
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array()) fail("{}: chat_template must be a string or a list of named templates", path);
  std::optional<std::string> def, tools;
  for (const auto& t : *it) {
    if (!t.is_object() || !t.contains("name") || !t.contains("template") || !t["name"].is_string() ||
        !t["template"].is_string())
      fail("{}: each entry of chat_template needs a string \"name\" and \"template\"", path);
    const std::string name = t["name"].get<std::string>();
    if (name == "default") def = t["template"].get<std::string>();
    if (name == "tool_use") tools = t["template"].get<std::string>();
  }
  if (tool_use && tools) return tools;
  if (def) return def;
  fail("{}: chat_template lists no template named \"default\"", path);
}

}  // namespace

jinja::Json chat_context(const ChatRequest& req) {
  jinja::Json ctx = jinja::Json::object();
  ctx["messages"] = req.messages;
  ctx["tools"] = req.tools;
  ctx["documents"] = nullptr;
  ctx["add_generation_prompt"] = req.add_generation_prompt;
  if (req.bos_token) ctx["bos_token"] = *req.bos_token;
  if (req.eos_token) ctx["eos_token"] = *req.eos_token;
  if (!req.extra.is_null()) {
    if (!req.extra.is_object()) fail("chat template: the extra variables must be a JSON object");
    for (auto it = req.extra.begin(); it != req.extra.end(); ++it) ctx[it.key()] = it.value();
  }
  return ctx;
}

std::string apply_chat_template(std::string_view source, const ChatRequest& req, const jinja::RenderOptions& options) {
  return jinja::Template(source).render(chat_context(req), options);
}

const std::vector<std::string>& builtin_chat_template_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& [name, text] : builtins()) n.push_back(name);
    return n;
  }();
  return names;
}

std::optional<std::string> builtin_chat_template(std::string_view name) {
  for (const auto& [n, text] : builtins())
    if (n == name) return text;
  return std::nullopt;
}

std::optional<ModelChatTemplate> model_chat_template(const std::string& model, bool tool_use) {
  const std::string path = resolve_model_path(model);
  std::string dir;
  if (is_directory(path)) {
    dir = path;
  } else if (path.ends_with("config.json")) {
    const auto parent = std::filesystem::path(path).parent_path();
    dir = parent.empty() ? "." : parent.string();
  }
  if (!dir.empty()) {
    const std::string jinja_file = dir + "/chat_template.jinja", config = dir + "/tokenizer_config.json";
    if (is_file(jinja_file)) return ModelChatTemplate{read_text_file(jinja_file), jinja_file};
    if (is_file(config)) {
      const nlohmann::json cfg = read_json_file(config);
      if (!cfg.is_object()) fail("{}: not a JSON object", config);
      if (auto t = config_template(cfg, config, tool_use)) return ModelChatTemplate{*t, config + " (chat_template)"};
    }
    return std::nullopt;
  }
  auto f = MappedFile::open(path);
  if (f->size() < 4 || std::string_view(reinterpret_cast<const char*>(f->data()), 4) != "GGUF") return std::nullopt;
  const GGUFFile g = GGUFFile::open(path);
  for (const std::string key : {tool_use ? "tokenizer.chat_template.tool_use" : "", "tokenizer.chat_template"}) {
    if (key.empty()) continue;
    const GGUFValue* v = g.find(key);
    if (!v) continue;
    if (v->type != GGUFType::STRING) fail("{}: {} has type {}, not str", path, key, gguf_type_name(v->type));
    return ModelChatTemplate{v->as_string(), path + " (" + key + ")"};
  }
  return std::nullopt;
}

ModelChatTemplate select_chat_template(const std::string& model, const std::string& choice, bool tool_use) {
  if (!choice.empty()) {
    if (auto t = builtin_chat_template(choice)) return {*t, "built-in template " + choice};
    if (is_file(choice)) return {read_text_file(choice), choice};
    std::string names;
    for (const auto& n : builtin_chat_template_names()) names += (names.empty() ? "" : ", ") + n;
    fail("chat template '{}' is neither a built-in name ({}) nor a file", choice, names);
  }
  if (auto t = model_chat_template(model, tool_use)) return *t;
  std::string names;
  for (const auto& n : builtin_chat_template_names()) names += (names.empty() ? "" : ", ") + n;
  fail("{}: the model has no chat template (GGUF tokenizer.chat_template, or chat_template in "
       "tokenizer_config.json); name one with --template ({}) or give a template file",
       model, names);
}

ChatRequest chat_request_from_json(const std::string& text, const std::string& source) {
  jinja::Json j;
  try {
    j = jinja::Json::parse(text);
  } catch (const std::exception& e) {
    fail("{}: not valid JSON: {}", source, e.what());
  }
  ChatRequest req;
  if (j.is_array()) {
    req.messages = j;
  } else if (j.is_object()) {
    if (!j.contains("messages")) fail("{}: missing field \"messages\"", source);
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& k = it.key();
      if (k == "messages") {
        req.messages = it.value();
      } else if (k == "tools") {
        req.tools = it.value();
      } else if (k == "add_generation_prompt" || k == "bos_token" || k == "eos_token" || k == "documents") {
        fail("{}: \"{}\" is set by lmpress (the model's tokens, --no-generation-prompt), not by the messages file",
             source, k);
      } else {
        req.extra[k] = it.value();
      }
    }
  } else {
    fail("{}: expected a JSON array of messages or an object with \"messages\"", source);
  }
  if (!req.messages.is_array()) fail("{}: \"messages\" must be an array", source);
  if (!req.tools.is_null() && !req.tools.is_array()) fail("{}: \"tools\" must be an array", source);
  for (size_t i = 0; i < req.messages.size(); i++) {
    const auto& m = req.messages[i];
    if (!m.is_object()) fail("{}: message {} is not an object", source, i);
    if (!m.contains("role") || !m["role"].is_string()) fail("{}: message {} needs a string \"role\"", source, i);
  }
  return req;
}

}  // namespace lmpress
