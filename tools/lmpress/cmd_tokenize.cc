// lmpress tokenize MODEL -p TEXT | -f FILE: token ids (as llama-tokenize --ids).
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "model/model.h"

namespace lmpress::cli {

void add_tokenize(CLI::App& app) {
  struct Opts {
    std::string model, tokenizer, prompt, file;
    bool no_bos = false, no_parse_special = false, pieces = false, json = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("tokenize", "Print the token ids of a text");
  add_path_option(cmd, "model", o->model, "Model (its tokenizer is used)", PathRole::Model)->required();
  auto* p = cmd->add_option("-p,--prompt", o->prompt, "Text to tokenize");
  auto* f = add_path_option(cmd, "-f,--file", o->file, "File to tokenize", PathRole::Input);
  p->excludes(f);
  add_path_option(cmd, "--tokenizer", o->tokenizer, "Tokenizer file for llama2.c checkpoints", PathRole::Input);
  cmd->add_flag("--no-bos", o->no_bos, "Do not add BOS/EOS");
  cmd->add_flag("--no-parse-special", o->no_parse_special, "Treat text like \"<s>\" as plain text");
  cmd->add_flag("--pieces", o->pieces, "Print 'id -> piece' lines");
  cmd->add_flag("--json", o->json, "Print a JSON array of ids");
  on_run(cmd, [o] {
    if (o->prompt.empty() && o->file.empty()) fail("tokenize: give -p TEXT or -f FILE");
    std::string text = o->file.empty() ? o->prompt : read_text_file(o->file);
    const auto tok = load_tokenizer(o->model, o->tokenizer);
    auto ids = tok->encode(text, !o->no_bos, !o->no_parse_special);
    if (o->json) {
      fmt::print("{}\n", nlohmann::json(ids).dump());
    } else if (o->pieces) {
      for (auto id : ids) fmt::print("{:6} -> '{}'\n", id, tok->decode_token(id, true));
    } else {
      std::string s = "[";
      for (size_t i = 0; i < ids.size(); i++) s += (i ? ", " : "") + std::to_string(ids[i]);
      fmt::print("{}]\n", s);
    }
  });
}

}  // namespace lmpress::cli
