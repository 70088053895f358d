// lmpress: compress, evaluate and run LLMs. Thin: parses, calls the library.
#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "kernels/matmul.h"
#include "sparse/repack.h"

namespace lmpress::cli {

void add_threads_option(CLI::App* cmd, int& threads) {
  cmd->add_option("-t,--threads", threads, "Threads (default: all cores)")->check(CLI::Range(0, 1024));
}

void add_cache_type_option(CLI::App* cmd, std::string& kv) {
  cmd->add_option("--cache-type", kv, "KV-cache element type: f16 (as llama.cpp) or f32")
      ->check(CLI::IsMember({"f16", "f32"}))
      ->capture_default_str();
}

void add_calibration_options(CLI::App* cmd, CalibrationOptions& calib, const std::string& who) {
  cmd->add_option("--calib", calib.file, "Calibration text (" + who + ")");
  cmd->add_option("--calib-samples", calib.samples, "Calibration windows")->capture_default_str();
  cmd->add_option("--calib-ctx", calib.ctx, "Tokens per window (capped by the model's context)")->capture_default_str();
}

std::unique_ptr<Model> load_for_inference(const std::string& path, const std::string& tokenizer_path) {
  auto m = load_model(path, tokenizer_path);
  repack_for_inference(*m);
  return m;
}

std::string read_input_text(const std::string& path) {
  std::string text = read_text_file(path);
  if (text.empty()) fail("{}: the text file is empty", path);
  return text;
}

}  // namespace lmpress::cli

int main(int argc, char** argv) {
  CLI::App app{"lmpress: compress, evaluate and run large language models on the CPU", "lmpress"};
  app.set_version_flag("--version", std::string("lmpress ") + LMPRESS_VERSION);
  app.require_subcommand(1);
  lmpress::cli::add_info(app);
  lmpress::cli::add_tokenize(app);
  lmpress::cli::add_generate(app);
  lmpress::cli::add_perplexity(app);
  lmpress::cli::add_convert(app);
  lmpress::cli::add_pull(app);
  lmpress::cli::add_quantize(app);
  lmpress::cli::add_imatrix(app);
  lmpress::cli::add_bench(app);
  lmpress::cli::add_make_model(app);
  lmpress::cli::add_kld(app);
  lmpress::cli::add_eval(app);
  lmpress::cli::add_prune(app);
  lmpress::cli::add_compare(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const lmpress::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
