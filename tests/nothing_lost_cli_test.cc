// Nothing lost, nothing silent, through the real command line: every output
// option pointed at every input is refused before any work, inputs keep their
// bytes, no partial output is left; non-finite weights and logits are errors,
// never numbers; bad option values get `error:` and exit 1.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "io/gguf.h"
#include "test_util.h"

namespace lmpress {
namespace {

namespace fs = std::filesystem;
using test::expect_cli_error;
using test::run_cli;

void write(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

// Every file below `root` with its bytes.
std::map<std::string, std::string> snapshot(const std::string& root) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file() && !e.is_symlink()) out[e.path().string()] = read_text_file(e.path().string());
  return out;
}

// A small workspace with one valid input of each kind, made by the CLI itself
// so that each command below would really write its output without the guard.
struct Workspace {
  std::string d, model, hf, text, task, imatrix, base;
  Workspace() {
    d = test::temp_dir();
    model = d + "/m.gguf", hf = d + "/hf", text = d + "/text.txt", task = d + "/task.jsonl";
    imatrix = d + "/imat.gguf", base = d + "/base.kld";
    fs::copy_file(test::shared_path("models/stories260K/stories260K.gguf"), model);
    write(text, read_text_file(test::shared_path("data/wikitext-2/wiki.test.raw")).substr(0, 60000));
    std::ifstream piqa(test::shared_path("data/tasks/piqa.jsonl"));
    std::string line, lines;
    for (int i = 0; i < 4 && std::getline(piqa, line); i++) lines += line + "\n";
    write(task, lines);
    const auto ok = [](const std::string& args) {
      const auto r = run_cli(args);
      EXPECT_EQ(r.status, 0) << args << "\n" << r.out;
    };
    ok("convert " + model + " " + hf);
    ok("imatrix " + model + " -f " + text + " -o " + imatrix + " -c 64 --chunks 2");
    ok("kld " + model + " -f " + text + " -c 64 --chunks 2 --save-base " + base);
  }
};

struct Case {
  std::string cmd;                  // the output argument is {OUT}
  std::vector<std::string> inputs;  // what the command reads
};

std::vector<Case> cases_with_outputs(const Workspace& w) {
  const std::string calib = " --calib " + w.text + " --calib-samples 2 --calib-ctx 32";
  const std::string link = w.d + "/hardlink.txt", sym = w.d + "/symlink.gguf";
  const std::vector<std::string> model_text = {w.model, sym, w.text, link, w.d};
  return {
      {"imatrix " + sym + " -f " + link + " -c 64 --chunks 1 -o {OUT}", model_text},
      {"kld " + sym + " -f " + link + " -c 64 --chunks 1 --save-base {OUT}", model_text},
      {"eval " + w.model + " --tasks " + w.task + " --limit 2 --log-samples {OUT}", {w.model, sym, w.task, w.d}},
      {"quantize " + w.model + " {OUT} --type q8_0 --imatrix " + w.imatrix, {w.model, sym, w.imatrix, w.d}},
      {"quantize " + w.model + " {OUT} --type q4_0 --method gptq" + calib, model_text},
      {"prune " + w.model + " {OUT} --method wanda --sparsity 0.5" + calib, model_text},
      {"convert " + w.model + " {OUT}", {w.model, sym, w.d}},
      {"convert " + w.hf + " {OUT} --dtype f16",
       {w.hf, w.hf + "/config.json", w.hf + "/model.safetensors", w.hf + "/tokenizer.model", w.d}},
  };
}

std::string with_out(std::string cmd, const std::string& out) { return cmd.replace(cmd.find("{OUT}"), 5, out); }

TEST(NothingLost, EveryOutputOptionRefusesEveryInput) {
  const Workspace w;
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(::link(w.text.c_str(), (w.d + "/hardlink.txt").c_str()), 0);
  fs::create_symlink(w.model, w.d + "/symlink.gguf");
  // Each command works as given (so a refusal below is the guard's doing).
  int fresh = 0;
  for (const auto& c : cases_with_outputs(w)) {
    const std::string out = w.d + "/fresh" + std::to_string(fresh++) + (c.cmd.starts_with("convert " + w.hf) ? "" : ".out");
    const auto r = run_cli(with_out(c.cmd, out));
    EXPECT_EQ(r.status, 0) << c.cmd << "\n" << r.out;
    EXPECT_TRUE(fs::exists(out)) << c.cmd;
  }
  const auto before = snapshot(w.d);
  int n = 0;
  for (const auto& c : cases_with_outputs(w))
    for (const auto& in : c.inputs) {
      const auto r = run_cli(with_out(c.cmd, in));
      n++;
      EXPECT_EQ(r.status, 1) << with_out(c.cmd, in) << "\n" << r.out;
      EXPECT_TRUE(r.out.starts_with("error: ")) << r.out;
      EXPECT_TRUE(r.out.find("refusing to overwrite the input") != std::string::npos ||
                  r.out.find("holds the input") != std::string::npos || r.out.find("is a directory") != std::string::npos)
          << with_out(c.cmd, in) << "\n" << r.out;
    }
  EXPECT_EQ(n, 36);
  const auto after = snapshot(w.d);
  for (const auto& [path, bytes] : before) {
    const auto it = after.find(path);
    ASSERT_NE(it, after.end()) << path << " was removed";
    EXPECT_TRUE(it->second == bytes) << path << " was changed";
  }
  for (const auto& [path, bytes] : after) EXPECT_TRUE(before.count(path)) << path << " was left behind";
}

TEST(NothingLost, CompareOutputPrefixAndTaskFilesAreGuarded) {
  const Workspace w;
  write(w.d + "/notes.md", "my notes");
  const auto before = snapshot(w.d);
  expect_cli_error("compare " + w.model + " " + w.model + " -f " + w.d + "/notes.md -c 64 --chunks 1 --out " + w.d +
                       "/notes",
                   "refusing to overwrite");
  fs::copy_file(w.task, w.d + "/t.json");
  const auto with_json = snapshot(w.d);
  expect_cli_error("compare " + w.model + " " + w.model + " -f " + w.text + " -c 64 --chunks 1 --tasks " + w.d +
                       "/t.json --limit 1 --out " + w.d + "/t",
                   "the input --tasks");
  EXPECT_EQ(snapshot(w.d), with_json);
  fs::remove(w.d + "/t.json");
  expect_cli_error("eval " + w.model + " --tasks piqa --task-dir " + w.d + " --limit 1 --log-samples " + w.d +
                       "/piqa.jsonl",
                   "");  // a task name that does not exist there: an error, nothing written
  fs::copy_file(w.task, w.d + "/piqa.jsonl");
  const auto before2 = snapshot(w.d);
  expect_cli_error("eval " + w.model + " --tasks piqa --task-dir " + w.d + " --limit 1 --log-samples " + w.d +
                       "/piqa.jsonl",
                   "the input --tasks");
  EXPECT_EQ(snapshot(w.d), before2);
  for (const auto& [path, bytes] : before) EXPECT_EQ(read_text_file(path), bytes) << path;
}

TEST(NothingLost, DirectoryOutputsReplaceModelDirectoriesWholeAndNothingElse) {
  const Workspace w;
  // A model directory is replaced whole: no stale file survives.
  const std::string out = w.d + "/out";
  fs::create_directory(out);
  write(out + "/config.json", "{}");
  write(out + "/tokenizer.json", "stale");
  const auto r = run_cli("convert " + w.model + " " + out);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_FALSE(fs::exists(out + "/tokenizer.json"));
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
  // A folder that is not a model directory is never deleted.
  const std::string user = w.d + "/user";
  fs::create_directory(user);
  write(user + "/thesis.tex", "years of work");
  expect_cli_error("convert " + w.model + " " + user, "not a model directory");
  expect_cli_error("quantize " + w.model + " " + user + " --type int8-ch", "not a model directory");
  EXPECT_EQ(read_text_file(user + "/thesis.tex"), "years of work");
  // An int-N directory output onto an existing file: refused before any calibration.
  write(w.d + "/plain.out", "a file");
  expect_cli_error("quantize " + w.model + " " + w.d + "/plain.out --type int4-g32 --method gptq --calib " + w.text,
                   "exists and is not a directory");
  EXPECT_EQ(read_text_file(w.d + "/plain.out"), "a file");
  for (const auto& e : fs::directory_iterator(w.d))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
}

// Writes a copy of stories260K.gguf with `value` at element `index` of `tensor` (an F32 tensor).
std::string with_value(const std::string& dir, const std::string& tensor, size_t index, float value) {
  const std::string src = test::shared_path("models/stories260K/stories260K.gguf");
  std::string bytes = read_text_file(src);
  const auto g = GGUFFile::open(src);
  bool found = false;
  for (const auto& t : g.tensor_infos)
    if (t.name == tensor) {
      EXPECT_EQ(t.ggml_type, 0u);  // F32
      const size_t off = size_t(g.data_offset + t.offset) + index * 4;
      std::memcpy(bytes.data() + off, &value, 4);
      found = true;
    }
  EXPECT_TRUE(found) << tensor;
  const std::string out = dir + "/" + tensor + "-" + std::to_string(value) + ".gguf";
  write(out, bytes);
  return out;
}

TEST(NothingSilent, NonFiniteWeightsAreErrorsNotResults) {
  const Workspace w;
  const std::string nan = with_value(w.d, "blk.0.ffn_down.weight", 7, NAN);
  const std::string text = " -f " + w.text + " -c 64 --chunks 2";
  expect_cli_error("perplexity " + nan + text, "not finite");
  expect_cli_error("kld " + w.model + " " + nan + text, "not finite");
  expect_cli_error("kld --base-logits " + w.base + " " + nan, "not finite");
  expect_cli_error("compare " + w.model + " " + nan + text, "not finite");
  expect_cli_error("eval " + nan + " --tasks " + w.task + " --limit 2", "not finite");
  for (const std::string& c : {"quantize " + nan + " " + w.d + "/q.gguf --type q8_0",
                              "convert " + nan + " " + w.d + "/q.gguf --dtype f16",
                              "prune " + nan + " " + w.d + "/q.gguf --method magnitude --sparsity 0.5",
                              "imatrix " + nan + " -f " + w.text + " -c 64 --chunks 1 -o " + w.d + "/q.gguf"}) {
    expect_cli_error(c, "blk.0.ffn_down.weight has a non-finite value (nan) at row 0, column 7");
    EXPECT_FALSE(fs::exists(w.d + "/q.gguf")) << c;
  }
  // The check can be skipped; imatrix then still refuses the NaN activations it meets.
  expect_cli_error("imatrix " + nan + " -f " + w.text + " -c 64 --chunks 1 --no-finite-check -o " + w.d + "/q.gguf",
                   "non-finite activation");
  EXPECT_FALSE(fs::exists(w.d + "/q.gguf"));
  const std::string big = with_value(w.d, "blk.0.ffn_down.weight", 3, 1e5f);
  expect_cli_error("convert " + big + " " + w.d + "/h.gguf --dtype f16", "does not fit in f16");
  EXPECT_FALSE(fs::exists(w.d + "/h.gguf"));
  const auto r = run_cli("convert " + big + " " + w.d + "/b.gguf --dtype bf16");
  EXPECT_EQ(r.status, 0) << r.out;
}

TEST(NothingSilent, BadOptionValuesAreErrorsWithTheOptionNamed) {
  const Workspace w;
  const std::string m = w.model;
  expect_cli_error("perplexity " + m + " -f " + w.text + " -c 64 --chunks 0", "--chunks");
  expect_cli_error("perplexity " + m + " -f " + w.text + " -c 64 --chunks -5", "--chunks");
  expect_cli_error("kld " + m + " " + m + " -f " + w.text + " -c 64 --chunks 0", "--chunks");
  expect_cli_error("imatrix " + m + " -f " + w.text + " --chunks 0 -o " + w.d + "/i.gguf", "--chunks");
  // CLI11's own parse errors carry the prefix and exit 1 too.
  expect_cli_error("generate " + m + " -p hi -n -1", "error: ");
  expect_cli_error("perplexity " + m + " -f " + w.text + " --ctx 0", "--ctx");
  expect_cli_error("perplexity " + m + " -f " + w.text + " --batch 0", "--batch");
  expect_cli_error("quantize " + m + " " + w.d + "/g.gguf --type q4_0 --method gptq --damp -1 --calib " + w.text,
                   "--damp");
  expect_cli_error("prune " + m + " " + w.d + "/g.gguf --method sparsegpt --sparsity 0.5 --damp 0 --calib " + w.text,
                   "--damp");
  // --target-bpw out of reach is refused before calibration: the 10-token text
  // would fail calibration, so the bpw message proves the order.
  write(w.d + "/short.txt", "a b c d e f g h i j");
  expect_cli_error("quantize " + m + " " + w.d + "/g.gguf --target-bpw 20 --calib " + w.d + "/short.txt",
                   "nothing to choose");
  expect_cli_error("quantize " + m + " " + w.d + "/g.gguf --target-bpw 100 --calib " + w.d + "/short.txt",
                   "between 0 and 32");
  expect_cli_error("quantize " + m + " " + w.d + "/g.gguf --target-bpw 0.5 --calib " + w.d + "/short.txt",
                   "below the smallest");
  // Text inputs: regular files only.
  expect_cli_error("perplexity " + m + " -f /dev/zero", "not a regular file");
  const std::string fifo = w.d + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  expect_cli_error("perplexity " + m + " -f " + fifo, "not a regular file");
  expect_cli_error("quantize " + m + " " + w.d + "/g.gguf --type q4_0 --method gptq --calib " + fifo,
                   "not a regular file");
  EXPECT_FALSE(fs::exists(w.d + "/g.gguf"));
}

TEST(NothingLost, InterruptedWriteLeavesNoTempFile) {
  const std::string d = test::temp_dir(), out = d + "/big.gguf";
  // The command line is built before fork: the child only execs.
  std::vector<std::string> words = test::cli_command();
  for (const char* a : {"make-model", "--shape", "tinyllama-1.1b", "--type", "f16"}) words.push_back(a);
  for (const std::string& a : {out, std::string("-t"), std::string("1")}) words.push_back(a);
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::setenv("LMPRESS_NO_PROGRESS", "1", 1);
    const int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  // Interrupt once the temp file is being written.
  const std::string tmp = out + ".tmp." + std::to_string(pid);
  const auto t0 = std::chrono::steady_clock::now();
  while (!fs::exists(tmp) && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(fs::exists(tmp)) << "make-model never started writing";
  ::kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << status;
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace lmpress

namespace lmpress {
namespace {

// A file name that is not UTF-8 (any byte string is a valid Linux path) must not
// turn --json output into an exception that loses the results.
TEST(NothingSilent, JsonOutputSurvivesPathsThatAreNotUtf8) {
  const std::string d = test::temp_dir(), model = d + "/m\xff.gguf";
  fs::copy_file(test::shared_path("models/stories260K/stories260K.gguf"), model);
  const std::string text = d + "/t\xfe.txt";
  write(text, read_text_file(test::shared_path("data/wikitext-2/wiki.test.raw")).substr(0, 20000));
  for (const std::string& args : {"info '" + model + "' --json --no-tensors",
                                 "perplexity '" + model + "' -f '" + text + "' -c 64 --chunks 1 --json"}) {
    const auto r = run_cli(args);
    ASSERT_EQ(r.status, 0) << args << "\n" << r.out;
    const auto start = r.out.find('{');
    ASSERT_NE(start, std::string::npos) << r.out;
    EXPECT_TRUE(nlohmann::json::accept(r.out.substr(start))) << r.out;
    EXPECT_NE(r.out.find("\xef\xbf\xbd"), std::string::npos) << "U+FFFD for the byte that is not UTF-8";
  }
}

}  // namespace
}  // namespace lmpress
