// lmpress: compress, evaluate and run LLMs. Thin: parses, calls the library.
#include <cstdio>

#include "commands.h"
#include "core/cpu_isa.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/temp_files.h"
#include "kernels/matmul.h"
#include "model/repack.h"
#include "runtime/chat_template.h"

namespace lmpress::cli {

void add_lora_option(CLI::App* cmd, std::vector<std::string>& loras) {
  cmd->add_option("--lora", loras,
                  "LoRA adapter to merge into the model's weights (llama.cpp's GGUF adapter or a PEFT directory), "
                  "FILE[:SCALE]; repeatable");
}

void add_compensate_options(CLI::App* cmd, std::string& spec, std::string& adapter_out, const std::string& out,
                            std::function<bool()> peft) {
  cmd->add_option("--compensate", spec,
                  "rank=R[,method=eora|svd]: low-rank error compensation of the block linears (EoRA: fitted in "
                  "the calibration inputs' eigenspace; svd: plain SVD of the error), written as a GGUF LoRA adapter "
                  "that llama.cpp runs with --lora, or a PEFT adapter beside an int-N checkpoint (needs --calib)");
  cmd->add_option("--compensate-out", adapter_out,
                  "The adapter (default: OUT.eora.gguf beside OUT.gguf; for an int-N checkpoint directory OUT, the "
                  "PEFT directory OUT-eora)");
  add_derived_paths(
      cmd, "--compensate-out", PathRole::Output,
      [&spec, &adapter_out, &out, peft] {
        if (spec.empty()) return std::vector<std::string>{};
        return std::vector<std::string>{parse_compensate_spec(spec, out, adapter_out, peft()).adapter_path};
      },
      OutputKind::Either, "adapter_config.json");
}

void add_threads_option(CLI::App* cmd, int& threads) {
  cmd->add_option("-t,--threads", threads, "Threads (default: all cores)")->check(CLI::Range(0, 1024));
}

void add_chat_template_option(CLI::App* cmd, const std::string& name, std::string& tmpl) {
  cmd->add_option(name, tmpl,
                  "A built-in template (chatml, llama2, llama3, mistral, phi3, gemma, zephyr) or a Jinja file; "
                  "default: the model's own");
  // A file (not a built-in's name) is an input the path guard checks.
  add_derived_paths(cmd, name, PathRole::Input, [&tmpl] {
    if (tmpl.empty() || builtin_chat_template(tmpl)) return std::vector<std::string>{};
    return std::vector<std::string>{tmpl};
  });
}

KvCacheSpec CacheOptions::spec() const {
  const KvRotate r = rotate == "on" ? KvRotate::On : rotate == "off" ? KvRotate::Off : KvRotate::Auto;
  KvCacheSpec s(parse_kv_type(k.empty() ? type : k), parse_kv_type(v.empty() ? type : v), r);
  s.group = group;
  s.residual = residual;
  return s;
}

lmpress_cache_params CacheOptions::c_params() const {
  lmpress_cache_params c{};
  c.type_k = k.empty() ? type.c_str() : k.c_str();
  c.type_v = v.empty() ? type.c_str() : v.c_str();
  c.rotate = rotate.c_str();
  c.kivi_group = group;
  c.kivi_residual = residual;
  c.policy = policy.c_str();
  return c;
}

void add_cache_options(CLI::App* cmd, CacheOptions& o, const std::string& prefix) {
  const std::vector<std::string> names = kv_type_name_list();
  const std::string who = prefix.empty() ? "" : " of the base model";
  cmd->add_option("--" + prefix + "cache-type", o.type,
                  "KV-cache type" + who + " for K and V: " + kv_type_names() + " (llama.cpp's block layouts)")
      ->check(CLI::IsMember(names))
      ->capture_default_str();
  cmd->add_option("--" + prefix + "cache-type-k", o.k, "K-cache type" + who + " (default: --" + prefix + "cache-type)")
      ->check(CLI::IsMember(names));
  cmd->add_option("--" + prefix + "cache-type-v", o.v, "V-cache type" + who + " (default: --" + prefix + "cache-type)")
      ->check(CLI::IsMember(names));
  if (prefix.empty())
    cmd->add_option("--kv-rotate", o.rotate,
                    "Hadamard rotation of K (with Q) and V before they are cached: auto (as llama.cpp: quantized "
                    "types, head size a multiple of 64), on, off")
        ->check(CLI::IsMember({"auto", "on", "off"}))
        ->capture_default_str();
  if (prefix.empty()) {
    cmd->add_option("--kv-group", o.group,
                    "KIVI caches: positions per key group and channels per value group (divides the head size)")
        ->capture_default_str();
    cmd->add_option("--kv-residual", o.residual,
                    "KIVI caches: newest positions kept in f16 besides the incomplete key group")
        ->capture_default_str();
  }
}

void add_kv_policy_option(CLI::App* cmd, CacheOptions& o) {
  cmd->add_option("--kv-policy", o.policy,
                  "Evict cached positions: none, sink-window:S,W (StreamingLLM: S sinks + the newest W), h2o:B[,W] "
                  "(B per head: the newest W, default B/2, and the most attended), snapkv:B,W (the prompt "
                  "compressed once to B, keeping its last W); serve: sink-window only")
      ->capture_default_str();
}

void add_calibration_options(CLI::App* cmd, CalibrationOptions& calib, const std::string& who) {
  add_path_option(cmd, "--calib", calib.file, "Calibration text (" + who + ")", PathRole::Input);
  cmd->add_option("--calib-samples", calib.samples, "Calibration windows")->capture_default_str();
  cmd->add_option("--calib-ctx", calib.ctx, "Tokens per window (capped by the model's context)")->capture_default_str();
}

const CLI::Validator& chunk_count() {
  static const CLI::Validator v(
      [](std::string& s) -> std::string {
        try {
          size_t end = 0;
          const long long n = std::stoll(s, &end);
          if (end == s.size() && (n == -1 || n >= 1)) return "";
        } catch (const std::exception&) {
        }
        return "expected -1 (all) or a count of at least 1, got '" + s + "'";
      },
      "-1|N>=1");
  return v;
}

const CLI::Validator& damp_fraction() {
  static const CLI::Validator v(
      [](std::string& s) -> std::string {
        try {
          size_t end = 0;
          const double d = std::stod(s, &end);
          if (end == s.size() && d > 0 && d <= 1) return "";
        } catch (const std::exception&) {
        }
        return "expected a fraction of the Hessian's mean diagonal in (0, 1], got '" + s + "'";
      },
      "(0,1]");
  return v;
}

void add_finite_check_flag(CLI::App* cmd, bool& skip) {
  cmd->add_flag("--no-finite-check", skip,
                "Skip the check that every weight is finite (saves one pass over the weights; a NaN or Inf then "
                "goes into the output)");
}

}  // namespace lmpress::cli

int main(int argc, char** argv) {
  CLI::App app{"lmpress: compress, evaluate and run large language models on the CPU", "lmpress"};
  app.set_version_flag("--version", std::string("lmpress ") + LMPRESS_VERSION);
  app.require_subcommand(1);
  lmpress::cli::add_info(app);
  lmpress::cli::add_tokenize(app);
  lmpress::cli::add_chat_template(app);
  lmpress::cli::add_generate(app);
  lmpress::cli::add_perplexity(app);
  lmpress::cli::add_convert(app);
  lmpress::cli::add_pull(app);
  lmpress::cli::add_quantize(app);
  lmpress::cli::add_imatrix(app);
  lmpress::cli::add_bench(app);
  lmpress::cli::add_bench_serve(app);
  lmpress::cli::add_make_model(app);
  lmpress::cli::add_kld(app);
  lmpress::cli::add_eval(app);
  lmpress::cli::add_prune(app);
  lmpress::cli::add_apply(app);
  lmpress::cli::add_smooth(app);
  lmpress::cli::add_rotate(app);
  lmpress::cli::add_lowrank(app);
  lmpress::cli::add_compare(app);
  lmpress::cli::add_serve(app);
  lmpress::cli::add_finetune(app);
  try {
    lmpress::cli::check_every_command_guarded(app);
    lmpress::apply_cpu_isa_env();
    lmpress::install_temp_cleanup();
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // CLI11 names the option in its message; lmpress adds its own prefix and exit code.
    std::fprintf(stderr, "error: %s\n", e.what());
    std::fprintf(stderr, "run with --help for the options\n");
    return 1;
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
