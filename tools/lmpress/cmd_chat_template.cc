// lmpress chat-template MODEL --messages FILE.json: the prompt a chat template renders.
#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "runtime/chat_template.h"

namespace lmpress::cli {

void add_chat_template(CLI::App& app) {
  struct Opts {
    std::string model, tokenizer, messages, tmpl;
    bool no_generation_prompt = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("chat-template", "Print the prompt a chat template renders for a list of messages");
  add_path_option(cmd, "model", o->model, "Model (its chat template and BOS/EOS tokens are used)", PathRole::Model)
      ->required();
  add_path_option(cmd, "--messages", o->messages,
                  "JSON file: an array of {\"role\", \"content\"} messages, or an object with \"messages\", "
                  "optionally \"tools\" and further template variables",
                  PathRole::Input)
      ->required();
  add_chat_template_option(cmd, "--template", o->tmpl);
  add_path_option(cmd, "--tokenizer", o->tokenizer, "Tokenizer file for llama2.c checkpoints", PathRole::Input);
  cmd->add_flag("--no-generation-prompt", o->no_generation_prompt,
                "Do not end with the header of the assistant's reply (add_generation_prompt false)");
  on_run(cmd, [o] {
    ChatRequest req = chat_request_from_json(read_text_file(o->messages), o->messages);
    req.add_generation_prompt = !o->no_generation_prompt;
    auto m = load_model(o->model, o->tokenizer);
    if (m->tokenizer) {
      const Vocab& v = m->tokenizer->vocab();
      if (v.bos >= 0) req.bos_token = v.tokens[size_t(v.bos)];
      if (v.eos >= 0) req.eos_token = v.tokens[size_t(v.eos)];
    }
    const ModelChatTemplate t = select_chat_template(o->model, o->tmpl, !req.tools.is_null());
    const std::string prompt = apply_chat_template(t.source, req);
    // Exactly the prompt's bytes: what the model is given.
    std::fwrite(prompt.data(), 1, prompt.size(), stdout);
  });
}

}  // namespace lmpress::cli
