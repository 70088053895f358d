// lmpress's Jinja interpreter against Python's Jinja2 (Debian's python3-jinja2,
// configured as transformers configures it: tests/jinja_reference.py) on every
// chat template of llama.cpp's models/templates and on lmpress's built-in
// templates, each rendered for the message lists of
// tests/data/chat_template_cases.json. A template either renders byte for byte
// as Jinja2 does in every case (raising the same raise_exception message, and
// failing wherever Jinja2 fails), or is refused with an error naming the
// construct lmpress does not support.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/mapped_file.h"
#include "runtime/chat_template.h"
#include "test_util.h"

namespace lmpress {
namespace {

namespace fs = std::filesystem;
using jinja::Json;
using jinja::TemplateError;


// Debian's interpreter (where python3-jinja2 installs), else the one on PATH.
std::string python_with_jinja2() {
  for (const char* py : {"/usr/bin/python3", "python3"})
    if (test::shell(std::string(py) + " -c 'import jinja2' 2>/dev/null").status == 0) return py;
  return "";
}

struct Outcome {
  bool ok = false;
  std::string output;
  std::string error;
  bool raised = false;       // raise_exception
  bool unsupported = false;  // lmpress only
};

struct Comparison {
  std::vector<std::string> accepted;
  std::map<std::string, std::string> refused;  // template -> lmpress's error
  int cases = 0;
};

// Renders every template for every case and compares with Python's results.
Comparison compare(const std::vector<std::string>& files, const std::string& cases_path, const std::string& py) {
  const std::string cases_text = read_text_file(cases_path);
  const Json spec = Json::parse(cases_text);
  std::string cmd = py + " " + LMPRESS_SOURCE_DIR "/tests/jinja_reference.py " + cases_path;
  for (const auto& f : files) cmd += " '" + f + "'";
  const test::CliResult r = test::shell(cmd);
  EXPECT_EQ(r.status, 0) << cmd;
  const Json ref = Json::parse(r.out);

  jinja::RenderOptions opt;
  std::tm tm{};
  const std::string now = spec["now"];
  EXPECT_TRUE(strptime(now.c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) << now;
  const std::time_t t = timegm(&tm);  // fills in the weekday and the day of the year
  gmtime_r(&t, &tm);
  opt.now = tm;

  Comparison cmp;
  cmp.cases = int(spec["cases"].size());
  for (const auto& f : files) {
    const std::string name = fs::path(f).filename().string();
    const std::string source = read_text_file(f);
    std::string refusal;
    bool agrees = true;
    for (const auto& c : spec["cases"]) {
      const std::string cname = c["name"];
      ChatRequest req;
      req.messages = c["messages"];
      if (c.contains("tools")) req.tools = c["tools"];
      req.add_generation_prompt = c["add_generation_prompt"];
      req.bos_token = spec["bos_token"].get<std::string>();
      req.eos_token = spec["eos_token"].get<std::string>();
      Outcome got;
      try {
        got.output = apply_chat_template(source, req, opt);
        got.ok = true;
      } catch (const TemplateError& e) {
        got.error = e.what();
        got.raised = e.kind == TemplateError::Kind::Raised;
        if (got.raised) got.error = e.detail;
        got.unsupported = e.kind == TemplateError::Kind::Unsupported;
      }
      const Json& want = ref[name][cname];
      const std::string where = name + " / " + cname;
      if (got.unsupported) {
        EXPECT_NE(got.error.find(" not supported"), std::string::npos) << where << ": " << got.error;
        if (refusal.empty()) refusal = got.error;
        continue;
      }
      if (want.contains("output")) {
        const std::string w = want["output"];
        if (!got.ok) {
          ADD_FAILURE() << where << ": Jinja2 renders it, lmpress fails: " << got.error;
          agrees = false;
        } else if (got.output != w) {
          size_t i = 0;
          while (i < w.size() && i < got.output.size() && w[i] == got.output[i]) i++;
          const size_t from = i < 60 ? 0 : i - 60;
          ADD_FAILURE() << where << ": output differs at byte " << i << "\n  jinja2:  " << w.substr(from, 160)
                        << "\n  lmpress: " << got.output.substr(from, 160);
          agrees = false;
        }
      } else if (got.ok) {
        ADD_FAILURE() << where << ": Jinja2 fails (" << want["error"].get<std::string>() << "), lmpress renders it";
        agrees = false;
      } else if (want["kind"] == "raised" && (!got.raised || got.error != want["error"].get<std::string>())) {
        ADD_FAILURE() << where << ": the template raises '" << want["error"].get<std::string>() << "', lmpress: "
                      << got.error;
        agrees = false;
      }
    }
    if (!refusal.empty()) {
      cmp.refused[name] = refusal;
    } else if (agrees) {
      cmp.accepted.push_back(name);
    }
  }
  return cmp;
}

const std::string kCases = LMPRESS_SOURCE_DIR "/tests/data/chat_template_cases.json";

TEST(ChatTemplateReference, LlamaCppTemplatesRenderAsJinja2OrAreRefused) {
  const std::string py = python_with_jinja2();
  ASSERT_FALSE(py.empty()) << "python3 with Jinja2 is needed: apt-get install python3-jinja2 (scripts/setup.sh)";
  const std::string checkout = test::llama_cpp_checkout();
  if (checkout.empty() || !fs::is_directory(checkout + "/models/templates"))
    FAIL() << "the llama.cpp checkout could not be made by scripts/llama-cpp-src.sh "
                    "(it needs npm and the npm registry); its models/templates are the test's input";
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(checkout + "/models/templates"))
    if (e.path().extension() == ".jinja") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 50u) << checkout;

  const Comparison cmp = compare(files, kCases, py);
  std::string refused;
  for (const auto& [name, why] : cmp.refused) refused += "\n  refused: " + name + ": " + why;
  const std::string summary = fmt::format("{} llama.cpp templates x {} message lists: {} render as Jinja2 does, {} refused{}",
                                          files.size(), cmp.cases, cmp.accepted.size(), cmp.refused.size(), refused);
  std::printf("%s\n", summary.c_str());
  RecordProperty("summary", summary);
  EXPECT_EQ(cmp.accepted.size() + cmp.refused.size(), files.size()) << summary;
  // Most real templates must render: a regression that refuses many fails here.
  EXPECT_GE(cmp.accepted.size() * 10, files.size() * 9) << summary;
}

TEST(ChatTemplateReference, BuiltinTemplatesRenderAsJinja2) {
  const std::string py = python_with_jinja2();
  ASSERT_FALSE(py.empty()) << "python3 with Jinja2 is needed: apt-get install python3-jinja2 (scripts/setup.sh)";
  const std::string d = test::temp_dir();
  std::vector<std::string> files;
  for (const auto& name : builtin_chat_template_names()) {
    files.push_back(d + "/" + name + ".jinja");
    std::ofstream(files.back(), std::ios::binary) << *builtin_chat_template(name);
  }
  const Comparison cmp = compare(files, kCases, py);
  EXPECT_EQ(cmp.accepted.size(), files.size());
  EXPECT_TRUE(cmp.refused.empty());
}

}  // namespace
}  // namespace lmpress
