// lmpress pull ORG/NAME: download a model from the Hugging Face hub.
#include "commands.h"
#include "io/hub.h"

namespace lmpress::cli {

void add_pull(CLI::App& app) {
  struct Opts {
    std::string repo;
    PullOptions p;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("pull", "Download a model (config, tokenizer, safetensors) from the Hugging Face hub");
  cmd->add_option("repo", o->repo, "Repository, e.g. HuggingFaceTB/SmolLM2-135M")->required();
  cmd->add_option("--revision", o->p.revision, "Branch, tag or commit")->capture_default_str();
  cmd->add_option("--cache", o->p.cache, "Cache directory (default $LMPRESS_CACHE or ~/.cache/lmpress)");
  cmd->add_option("--endpoint", o->p.endpoint, "Hub URL (default $HF_ENDPOINT or https://huggingface.co)");
  cmd->add_flag("-q,--quiet", o->p.quiet, "No progress output");
  on_run(cmd, [o] {
    std::vector<PulledFile> files;
    std::string dir = pull(o->repo, o->p, &files);
    for (const auto& f : files) fmt::print("{:<40} {:>14} bytes  {}\n", f.name, f.size, f.downloaded ? "downloaded" : "cached");
    fmt::print("{}\n", dir);
  });
}

}  // namespace lmpress::cli
