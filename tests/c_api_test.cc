// The C API (include/lmpress.h) as a program that embeds lmpress sees it:
// results equal the command line's, every failure is a status and a message,
// and liblmpress.so exports that API and nothing else.
#include <gtest/gtest.h>
#include <lmpress.h>
#include <omp.h>  // compiled as C++ here; as C99 by examples/c/generate.c

#include <algorithm>
#include <cmath>
#include <functional>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/mapped_file.h"
#include "test_util.h"

namespace {

using lmpress::test::run_cli;
using lmpress::test::shared_path;
using lmpress::test::shell;

std::string model_dir() { return shared_path("models/lmp-8m"); }
std::string wiki() { return shared_path("data/wikitext-2/wiki.test.raw"); }

struct ModelHandle {
  lmpress_model* m = nullptr;
  ModelHandle() {
    const lmpress_status s = lmpress_model_load(model_dir().c_str(), nullptr, &m);
    EXPECT_EQ(s, LMPRESS_OK) << lmpress_last_error();
  }
  ~ModelHandle() { lmpress_model_free(m); }
};

std::vector<int32_t> cli_tokens(const std::string& prompt, int n) {
  auto r = run_cli("generate " + model_dir() + " -p '" + prompt + "' -n " + std::to_string(n) + " --json");
  EXPECT_EQ(r.status, 0) << r.out;
  return nlohmann::json::parse(r.out.substr(r.out.find('{')))["tokens"].get<std::vector<int32_t>>();
}

// The ids after "tokens:" in a run of examples/c/generate.c.
std::vector<int32_t> example_tokens(const std::string& out) {
  std::vector<int32_t> ids;
  const size_t at = out.find("tokens:");
  EXPECT_NE(at, std::string::npos) << out;
  std::istringstream in(out.substr(at + 7, out.find('\n', at) - at - 7));
  for (int32_t id; in >> id;) ids.push_back(id);
  return ids;
}

std::vector<int32_t> tokenize(const lmpress_model* m, const std::string& text) {
  size_t n = 0;
  EXPECT_EQ(lmpress_tokenize(m, text.data(), text.size(), true, false, nullptr, 0, &n), LMPRESS_ERR_BUFFER_TOO_SMALL);
  std::vector<int32_t> ids(n);
  EXPECT_EQ(lmpress_tokenize(m, text.data(), text.size(), true, false, ids.data(), ids.size(), &n), LMPRESS_OK);
  return ids;
}

TEST(CApi, GreedyGenerationEqualsTheCli) {
  if (!lmpress::test::have_shared("models/lmp-8m")) GTEST_SKIP();
  const std::vector<int32_t> want = cli_tokens("Once upon a time", 24);
  ASSERT_EQ(want.size(), 24u);
  // generate with a token callback, and the step-by-step loop (tokenize,
  // context eval, sampler), both from the C program linked to liblmpress.so.
  for (const char* mode : {"", " --manual"}) {
    auto r = shell(std::string(LMPRESS_EXAMPLE_C) + " " + model_dir() + " 'Once upon a time' 24" + mode + " 2>&1 >/dev/null");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(example_tokens(r.out), want) << mode;
  }
}

TEST(CApi, BatchOfSequencesGivesEachTheLoneContextsLogits) {
  if (!lmpress::test::have_shared("models/lmp-8m")) GTEST_SKIP();
  ModelHandle h;
  lmpress_model_info info;
  ASSERT_EQ(lmpress_model_get_info(h.m, &info), LMPRESS_OK);
  const int64_t V = info.n_vocab;
  const std::vector<std::string> texts = {"The cat sat on the mat and looked out of the window.", "Hello",
                                          "In 1887 the railway reached the town, and with it came"};
  std::vector<std::vector<int32_t>> seqs;
  std::vector<std::vector<float>> lone;  // every position's logits from a context of its own
  for (const auto& t : texts) {
    seqs.push_back(tokenize(h.m, t));
    lmpress_context* ctx = nullptr;
    ASSERT_EQ(lmpress_context_create(h.m, nullptr, &ctx), LMPRESS_OK) << lmpress_last_error();
    // The prompt in one eval, then two more tokens one at a time.
    std::vector<float> all;
    const auto& s = seqs.back();
    ASSERT_EQ(lmpress_context_eval(ctx, s.data(), s.size() - 2, true), LMPRESS_OK);
    size_t rows = 0;
    const float* l = lmpress_context_logits(ctx, &rows);
    ASSERT_EQ(rows, s.size() - 2);
    all.assign(l, l + rows * V);
    for (size_t i = s.size() - 2; i < s.size(); i++) {
      ASSERT_EQ(lmpress_context_eval(ctx, &s[i], 1, false), LMPRESS_OK);
      l = lmpress_context_logits(ctx, &rows);
      all.insert(all.end(), l, l + V);
    }
    EXPECT_EQ(lmpress_context_n_past(ctx), int64_t(s.size()));
    lone.push_back(all);
    lmpress_context_free(ctx);
  }
  lmpress_batch* b = nullptr;
  ASSERT_EQ(lmpress_batch_create(h.m, nullptr, &b), LMPRESS_OK) << lmpress_last_error();
  // Step 1: every sequence's prompt (all but its last two tokens) in one
  // batch, interleaved; steps 2 and 3: one token of each.
  std::vector<int32_t> tok, seq;
  std::vector<int64_t> pos;
  std::vector<uint8_t> want;
  std::vector<std::pair<size_t, size_t>> who;  // (sequence, position) of each logits row
  auto add = [&](size_t s, size_t p) {
    tok.push_back(seqs[s][p]);
    seq.push_back(int32_t(s) * 7 + 3);  // any ids >= 0
    pos.push_back(int64_t(p));
    want.push_back(1);
    who.emplace_back(s, p);
  };
  auto run = [&] {
    std::unique_ptr<bool[]> w(new bool[want.size()]);
    for (size_t i = 0; i < want.size(); i++) w[i] = want[i];
    ASSERT_EQ(lmpress_batch_eval(b, tok.data(), seq.data(), pos.data(), w.get(), tok.size()), LMPRESS_OK)
        << lmpress_last_error();
    size_t rows = 0;
    const float* l = lmpress_batch_logits(b, &rows);
    ASSERT_EQ(rows, who.size());
    for (size_t r = 0; r < rows; r++) {
      const auto [s, p] = who[r];
      const float* ref = lone[s].data() + p * V;
      // Bit for bit with AVX2/NEON's packed GEMM (runtime/batch.h).
      for (int64_t j = 0; j < V; j++) ASSERT_NEAR(l[r * V + j], ref[j], 1e-3f) << "sequence " << s << " position " << p;
    }
    tok.clear(), seq.clear(), pos.clear(), want.clear(), who.clear();
  };
  const size_t longest = std::max({seqs[0].size(), seqs[1].size(), seqs[2].size()});
  for (size_t p = 0; p < longest; p++)
    for (size_t s = 0; s < seqs.size(); s++)
      if (p + 2 < seqs[s].size()) add(s, p);
  run();
  for (int step = 2; step >= 1; step--) {
    for (size_t s = 0; s < seqs.size(); s++) add(s, seqs[s].size() - size_t(step));
    run();
  }
  EXPECT_EQ(lmpress_batch_seq_length(b, 3), int64_t(seqs[0].size()));
  // A position out of order fails and changes nothing.
  int32_t t = 5, s3 = 3;
  int64_t p0 = 0;
  size_t rows_before = 0;
  const float* before = lmpress_batch_logits(b, &rows_before);
  const float first = before[0];
  EXPECT_EQ(lmpress_batch_eval(b, &t, &s3, &p0, nullptr, 1), LMPRESS_ERR_FAILED);
  size_t rows_after = 0;
  EXPECT_EQ(lmpress_batch_logits(b, &rows_after), before) << "a failed eval keeps the last logits";
  EXPECT_EQ(rows_after, rows_before);
  EXPECT_EQ(before[0], first);
  EXPECT_NE(std::string(lmpress_last_error()).find("expects position"), std::string::npos) << lmpress_last_error();
  EXPECT_EQ(lmpress_batch_seq_length(b, 3), int64_t(seqs[0].size()));
  // Truncating a sequence lets it continue from there.
  ASSERT_EQ(lmpress_batch_seq_truncate(b, 3, 2), LMPRESS_OK) << lmpress_last_error();
  EXPECT_EQ(lmpress_batch_seq_length(b, 3), 2);
  ASSERT_EQ(lmpress_batch_seq_truncate(b, 3, 0), LMPRESS_OK);
  EXPECT_EQ(lmpress_batch_seq_length(b, 3), 0);
  lmpress_batch_free(b);
}

TEST(CApi, PerplexityEqualsTheCli) {
  if (!lmpress::test::have_shared("models/lmp-8m")) GTEST_SKIP();
  auto r = run_cli("perplexity " + model_dir() + " -f " + wiki() + " --ctx 128 --chunks 3 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto cli = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  const double want = cli["ppl"].get<double>();
  ModelHandle h;
  const std::string text = lmpress::read_text_file(wiki());
  lmpress_perplexity_params p = lmpress_perplexity_default_params();
  p.n_ctx = 128;
  p.n_chunks = 3;
  int64_t calls = 0;
  p.progress = [](const char*, uint64_t, uint64_t, void* u) {
    ++*static_cast<int64_t*>(u);
    return true;
  };
  p.progress_user_data = &calls;
  lmpress_perplexity_result res;
  ASSERT_EQ(lmpress_perplexity(h.m, text.data(), text.size(), &p, &res), LMPRESS_OK) << lmpress_last_error();
  EXPECT_EQ(res.ppl, want);
  EXPECT_EQ(res.n_chunks, 3);
  EXPECT_EQ(res.n_tokens_scored, cli["tokens_scored"].get<int64_t>());
  EXPECT_GT(res.n_tokens_scored, 3 * 60);
  EXPECT_EQ(calls, 4);  // 0 of 3, then after each window
}

TEST(CApi, PerplexityChunksEarlyExitAndItsReport) {
  if (!lmpress::test::have_shared("models/lmp-8m")) GTEST_SKIP();
  ModelHandle h;
  const std::string text = lmpress::read_text_file(wiki());
  lmpress_perplexity_params p = lmpress_perplexity_default_params();
  p.n_ctx = 128;
  p.n_chunks = 3;
  std::vector<double> running;
  p.on_chunk = [](int64_t i, double ppl, void* u) {
    auto* v = static_cast<std::vector<double>*>(u);
    EXPECT_EQ(i, int64_t(v->size()));
    v->push_back(ppl);
    return true;
  };
  p.chunk_user_data = &running;
  lmpress_perplexity_result res;
  ASSERT_EQ(lmpress_perplexity(h.m, text.data(), text.size(), &p, &res), LMPRESS_OK) << lmpress_last_error();
  ASSERT_EQ(running.size(), 3u);
  EXPECT_EQ(running.back(), res.ppl);
  const auto report = nlohmann::json::parse(lmpress_last_report());
  EXPECT_EQ(report["running_ppl"].get<std::vector<double>>(), running);
  EXPECT_EQ(report["ppl"].get<double>(), res.ppl);
  EXPECT_EQ(report["tokens_scored"].get<int64_t>(), res.n_tokens_scored);
  EXPECT_EQ(report["protocol"], "llama.cpp");
  EXPECT_FALSE(report.contains("early_exit"));
  // A callback that says no cancels; the last report stays the last success's.
  p.on_chunk = [](int64_t, double, void*) { return false; };
  EXPECT_EQ(lmpress_perplexity(h.m, text.data(), text.size(), &p, &res), LMPRESS_ERR_CANCELLED);
  EXPECT_EQ(nlohmann::json::parse(lmpress_last_report()), report);
  // Early exit: tokens after the first of each window decoded one by one, some leaving after block 2.
  p.on_chunk = nullptr;
  p.n_chunks = 1;
  p.early_exit.threshold = 0.3;
  p.early_exit.layer = 2;
  ASSERT_EQ(lmpress_perplexity(h.m, text.data(), text.size(), &p, &res), LMPRESS_OK) << lmpress_last_error();
  const auto ee = nlohmann::json::parse(lmpress_last_report())["early_exit"];
  EXPECT_EQ(ee["layer"], 2);
  EXPECT_GT(ee["steps"].get<int64_t>(), 0);
  p.early_exit.layer = 99;
  EXPECT_EQ(lmpress_perplexity(h.m, text.data(), text.size(), &p, &res), LMPRESS_ERR_FAILED);
  EXPECT_NE(std::string(lmpress_last_error()).find("--exit-layer 99"), std::string::npos);
  // Stepped generation has no early exit.
  lmpress_generate_params g = lmpress_generate_default_params();
  g.early_exit.threshold = 0.5;
  lmpress_generation* gen = nullptr;
  EXPECT_EQ(lmpress_generation_start(h.m, "x", &g, &gen), LMPRESS_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(gen, nullptr);
}

TEST(CApi, CompressionReportsAndConvertParams) {
  if (!lmpress::test::have_shared("models/lmp-8m")) GTEST_SKIP();
  const std::string d = lmpress::test::temp_dir();
  lmpress_quantize_params q = lmpress_quantize_default_params();
  q.type = "q4_0";  // its mix alone would give output.weight Q8_0 here
  q.pure = true;
  q.name = "pure-q4";
  ASSERT_EQ(lmpress_quantize(model_dir().c_str(), (d + "/q.gguf").c_str(), &q), LMPRESS_OK) << lmpress_last_error();
  const auto r = nlohmann::json::parse(lmpress_last_report());
  ASSERT_FALSE(r["tensors"].empty());
  for (const auto& t : r["tensors"]) EXPECT_EQ(t["type"], "Q4_0") << t;  // --pure: no mix
  const uint64_t file_bytes = std::filesystem::file_size(d + "/q.gguf");
  EXPECT_LE(r["bytes_out"].get<uint64_t>(), file_bytes);
  EXPECT_GT(r["bytes_out"].get<uint64_t>(), file_bytes * 9 / 10);  // the tensors are nearly all of it
  EXPECT_NEAR(r["bpw"].get<double>(), double(r["bytes_out"].get<uint64_t>()) * 8 / r["n_params"].get<double>(), 1e-9);
  EXPECT_NE(lmpress::read_text_file(d + "/q.gguf").find("pure-q4"), std::string::npos);
  // Convert with its own params: pooled KV heads and a name.
  lmpress_convert_params c = lmpress_convert_default_params();
  c.dtype = "F16";  // as --dtype: any case
  c.name = "converted";
  c.kv_heads = 1;
  ASSERT_EQ(lmpress_convert_model(model_dir().c_str(), (d + "/c.gguf").c_str(), &c), LMPRESS_OK) << lmpress_last_error();
  const auto cr = nlohmann::json::parse(lmpress_last_report());
  EXPECT_EQ(cr["format"], "gguf");
  lmpress_model* m = nullptr;
  ASSERT_EQ(lmpress_model_load((d + "/c.gguf").c_str(), nullptr, &m), LMPRESS_OK) << lmpress_last_error();
  lmpress_model_info info;
  ASSERT_EQ(lmpress_model_get_info(m, &info), LMPRESS_OK);
  EXPECT_EQ(info.n_head_kv, 1);
  lmpress_model_free(m);
  c.split_experts = 1;
  EXPECT_EQ(lmpress_convert_model(model_dir().c_str(), (d + "/x.gguf").c_str(), &c), LMPRESS_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lmpress_last_error()).find("split_experts 1"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(d + "/x.gguf"));
  // Low-rank factors: rank 16 in every linear of blocks 1.., whose parameters the report counts.
  lmpress_lowrank_params lr = lmpress_lowrank_default_params();
  lr.method = "svd";
  lr.rank = 16;
  const char* skip[] = {"model.layers.0"};
  lr.ignore = skip;
  lr.n_ignore = 1;
  ASSERT_EQ(lmpress_lowrank(model_dir().c_str(), (d + "/lr.gguf").c_str(), &lr), LMPRESS_OK) << lmpress_last_error();
  const auto lrr = nlohmann::json::parse(lmpress_last_report());
  EXPECT_EQ(lrr["method"], "svd");
  int64_t removed = 0;
  ASSERT_FALSE(lrr["tensors"].empty());
  for (const auto& t : lrr["tensors"]) {
    EXPECT_EQ(t["rank"], 16) << t;
    EXPECT_NE(t["name"].get<std::string>().rfind("blk.0.", 0), 0u) << t;
    removed += t["params_before"].get<int64_t>() - t["params_after"].get<int64_t>();
  }
  EXPECT_EQ(lrr["params_before"].get<int64_t>() - lrr["params_after"].get<int64_t>(), removed);
  ASSERT_EQ(lmpress_model_load((d + "/lr.gguf").c_str(), nullptr, &m), LMPRESS_OK) << lmpress_last_error();
  ASSERT_EQ(lmpress_model_get_info(m, &info), LMPRESS_OK);
  EXPECT_EQ(info.n_params, lrr["params_after"].get<int64_t>());
  lmpress_model_free(m);
  lr.ratio = 0.3;
  EXPECT_EQ(lmpress_lowrank(model_dir().c_str(), (d + "/x.gguf").c_str(), &lr), LMPRESS_ERR_FAILED);
  EXPECT_NE(std::string(lmpress_last_error()).find("not both"), std::string::npos);
  lr.ratio = -1;
  lr.method = "svd-llm";
  EXPECT_EQ(lmpress_lowrank(model_dir().c_str(), (d + "/x.gguf").c_str(), &lr), LMPRESS_ERR_FAILED);
  EXPECT_NE(std::string(lmpress_last_error()).find("--calib FILE"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(d + "/x.gguf"));
}

TEST(CApi, TokenCallbackStopsGeneration) {
  if (!lmpress::test::have_shared("models/lmp-8m")) GTEST_SKIP();
  ModelHandle h;
  struct Seen {
    std::vector<int32_t> ids;
    std::string text;
  } seen;
  lmpress_generate_params g = lmpress_generate_default_params();
  g.n_predict = 20;
  g.on_token = [](int32_t id, const char* text, size_t len, void* u) {
    auto* s = static_cast<Seen*>(u);
    s->ids.push_back(id);
    s->text.append(text, len);
    return s->ids.size() < 5;
  };
  g.user_data = &seen;
  lmpress_generate_result r;
  ASSERT_EQ(lmpress_generate(h.m, "Once upon a time", &g, &r), LMPRESS_OK) << lmpress_last_error();
  EXPECT_EQ(r.stop_reason, LMPRESS_STOP_CALLER);
  EXPECT_EQ(r.n_generated, 5);
  const std::vector<int32_t> want = cli_tokens("Once upon a time", 5);
  EXPECT_EQ(seen.ids, want);
  // The pieces are the tokens' text.
  char buf[512];
  size_t n = 0;
  ASSERT_EQ(lmpress_detokenize(h.m, want.data(), want.size(), false, buf, sizeof buf, &n), LMPRESS_OK);
  EXPECT_EQ(seen.text, std::string(buf, n));
}

TEST(CApi, QuantizeReportsProgressAndCancels) {
  if (!lmpress::test::have_shared("models/lmp-8m")) GTEST_SKIP();
  const std::string d = lmpress::test::temp_dir(), out = d + "/q.gguf";
  lmpress_quantize_params q = lmpress_quantize_default_params();
  q.type = "q8_0";
  struct Log {
    std::vector<std::string> stages;
    int stop_after = -1;
  } log;
  q.progress = [](const char* stage, uint64_t done, uint64_t, void* u) {
    auto* l = static_cast<Log*>(u);
    l->stages.push_back(std::string(stage) + ":" + std::to_string(done));
    return l->stop_after < 0 || int(l->stages.size()) < l->stop_after;
  };
  q.progress_user_data = &log;
  log.stop_after = 3;
  EXPECT_EQ(lmpress_quantize(model_dir().c_str(), out.c_str(), &q), LMPRESS_ERR_CANCELLED);
  EXPECT_NE(std::string(lmpress_last_error()).find("cancelled"), std::string::npos) << lmpress_last_error();
  EXPECT_EQ(log.stages.size(), 3u);
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(d), std::filesystem::directory_iterator()), 0)
      << "a cancelled quantize leaves no temporary file";
  log = {};
  ASSERT_EQ(lmpress_quantize(model_dir().c_str(), out.c_str(), &q), LMPRESS_OK) << lmpress_last_error();
  ASSERT_GE(log.stages.size(), 2u);
  // The same bytes as the command line writes.
  auto r = run_cli("quantize " + model_dir() + " " + d + "/cli.gguf --type q8_0");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(lmpress::read_text_file(out), lmpress::read_text_file(d + "/cli.gguf"));
  // Rotated first, as `quantize --rotate`.
  q.rotate = "hadamard:2";
  ASSERT_EQ(lmpress_quantize(model_dir().c_str(), (d + "/rot.gguf").c_str(), &q), LMPRESS_OK) << lmpress_last_error();
  r = run_cli("quantize " + model_dir() + " " + d + "/cli-rot.gguf --type q8_0 --rotate hadamard:2");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(lmpress::read_text_file(d + "/rot.gguf") == lmpress::read_text_file(d + "/cli-rot.gguf"));
  EXPECT_FALSE(lmpress::read_text_file(d + "/rot.gguf") == lmpress::read_text_file(out));
  q.rotate = "spin";
  EXPECT_NE(lmpress_quantize(model_dir().c_str(), (d + "/x.gguf").c_str(), &q), LMPRESS_OK);
  EXPECT_NE(std::string(lmpress_last_error()).find("--rotate spin"), std::string::npos) << lmpress_last_error();
  EXPECT_FALSE(std::filesystem::exists(d + "/x.gguf"));
  q.rotate = nullptr;
  // The result loads and runs through the API.
  lmpress_model* m = nullptr;
  ASSERT_EQ(lmpress_model_load(out.c_str(), nullptr, &m), LMPRESS_OK) << lmpress_last_error();
  lmpress_generate_params g = lmpress_generate_default_params();
  g.n_predict = 4;
  lmpress_generate_result res;
  EXPECT_EQ(lmpress_generate(m, "Once", &g, &res), LMPRESS_OK);
  EXPECT_EQ(res.n_generated, 4);
  lmpress_model_free(m);
}

TEST(CApi, EveryFailureIsAStatusAndAMessage) {
  auto fails = [](lmpress_status got, lmpress_status want, const std::string& msg) {
    EXPECT_EQ(got, want) << lmpress_status_name(got) << ": " << lmpress_last_error();
    EXPECT_NE(std::string(lmpress_last_error()).find(msg), std::string::npos)
        << "'" << lmpress_last_error() << "' lacks '" << msg << "'";
  };
  const auto I = LMPRESS_ERR_INVALID_ARGUMENT, F = LMPRESS_ERR_FAILED;
  lmpress_model* m = reinterpret_cast<lmpress_model*>(1);
  fails(lmpress_model_load(nullptr, nullptr, &m), I, "lmpress_model_load: path is NULL");
  EXPECT_EQ(m, nullptr);
  fails(lmpress_model_load("x", nullptr, nullptr), I, "out is NULL");
  const std::string missing = lmpress::test::temp_dir() + "/no-such-model.gguf";
  fails(lmpress_model_load(missing.c_str(), nullptr, &m), F, missing);
  fails(lmpress_set_threads(-1), I, "lmpress_set_threads");
  size_t n = 0;
  int32_t tok = 0;
  char buf[8];
  fails(lmpress_tokenize(nullptr, "a", 1, true, false, &tok, 1, &n), I, "model is NULL");
  fails(lmpress_detokenize(nullptr, &tok, 1, false, buf, sizeof buf, &n), I, "model is NULL");
  fails(lmpress_model_get_info(nullptr, nullptr), I, "model is NULL");
  lmpress_context* ctx = nullptr;
  fails(lmpress_context_create(nullptr, nullptr, &ctx), I, "model is NULL");
  fails(lmpress_context_eval(nullptr, &tok, 1, false), I, "ctx is NULL");
  fails(lmpress_context_truncate(nullptr, 0), I, "ctx is NULL");
  EXPECT_EQ(lmpress_context_logits(nullptr, &n), nullptr);
  EXPECT_EQ(n, 0u);
  lmpress_batch* b = nullptr;
  fails(lmpress_batch_create(nullptr, nullptr, &b), I, "model is NULL");
  fails(lmpress_batch_eval(nullptr, &tok, &tok, nullptr, nullptr, 1), I, "batch is NULL");
  fails(lmpress_batch_seq_truncate(nullptr, 0, 0), I, "batch is NULL");
  lmpress_sampler* smp = nullptr;
  fails(lmpress_sampler_create(nullptr, nullptr), I, "out is NULL");
  lmpress_sampler_params sp = lmpress_sampler_default_params();
  sp.repeat_penalty = 0;
  fails(lmpress_sampler_create(&sp, &smp), I, "repeat_penalty");
  fails(lmpress_sampler_sample(nullptr, nullptr, 0, nullptr, 0, &tok), I, "sampler is NULL");
  fails(lmpress_generate(nullptr, "a", nullptr, nullptr), I, "model is NULL");
  fails(lmpress_perplexity(nullptr, "a", 1, nullptr, nullptr), I, "model is NULL");
  fails(lmpress_quantize("a", "b", nullptr), I, "params->type is NULL");
  {
    lmpress_quantize_params qp = lmpress_quantize_default_params();
    EXPECT_LT(qp.smooth, 0);
    qp.scheme = "w4a4";
    EXPECT_NE(lmpress_quantize(model_dir().c_str(), "/nonexistent-dir/x", &qp), LMPRESS_OK);
    EXPECT_NE(std::string(lmpress_last_error()).find("--scheme w4a4"), std::string::npos) << lmpress_last_error();
  }
  fails(lmpress_chat_apply_template(nullptr, nullptr, nullptr, 0, true, buf, sizeof buf, &n), I,
        "give a model or a template name");
  lmpress_engine* e = nullptr;
  const lmpress_step_event* ev = nullptr;
  fails(lmpress_engine_create(nullptr, nullptr, &e), I, "model is NULL");
  fails(lmpress_engine_submit(nullptr, 0, &tok, 1, nullptr), I, "engine is NULL");
  fails(lmpress_engine_step(nullptr, &ev, &n), I, "engine is NULL");
  fails(lmpress_engine_cancel(nullptr, 0), I, "engine is NULL");
  EXPECT_EQ(lmpress_engine_n_requests(nullptr), 0u);
  fails(lmpress_kld(nullptr, nullptr, "a", 1, nullptr, nullptr), I, "base is NULL");
  EXPECT_STREQ(lmpress_status_name(LMPRESS_ERR_CANCELLED), "cancelled");
  EXPECT_STREQ(lmpress_version(), LMPRESS_VERSION);
  EXPECT_EQ(lmpress_api_version(), LMPRESS_API_VERSION);

  if (!lmpress::test::have_shared("models/lmp-8m")) return;
  ModelHandle h;
  // Tokens outside the vocabulary, a buffer too small, bad options: each names what is wrong.
  tok = 1 << 30;
  fails(lmpress_detokenize(h.m, &tok, 1, false, buf, sizeof buf, &n), I, "outside the vocabulary");
  tok = 1;
  const std::string long_text = "a long text that takes more than eight bytes";
  const auto ids = tokenize(h.m, long_text);
  fails(lmpress_detokenize(h.m, ids.data(), ids.size(), false, buf, sizeof buf, &n), LMPRESS_ERR_BUFFER_TOO_SMALL,
        "the buffer has 8");
  std::vector<char> fits(n + 1);
  ASSERT_EQ(lmpress_detokenize(h.m, ids.data(), ids.size(), false, fits.data(), fits.size(), &n), LMPRESS_OK);
  EXPECT_NE(std::string(fits.data()).find(long_text), std::string::npos) << fits.data();
  lmpress_context_params cp = lmpress_context_default_params();
  cp.cache.type_k = "q5_9";
  fails(lmpress_context_create(h.m, &cp, &ctx), F, "q5_9");
  cp = lmpress_context_default_params();
  cp.cache.type_k = "q4_0";  // blocks of 32 do not divide lmp-8m's head of 48
  fails(lmpress_context_create(h.m, &cp, &ctx), F, "do not divide");
  cp = lmpress_context_default_params();
  cp.cache.policy = "sink-window:4";
  fails(lmpress_context_create(h.m, &cp, &ctx), F, "sink-window");
  cp = lmpress_context_default_params();
  cp.n_ctx = 16;
  ASSERT_EQ(lmpress_context_create(h.m, &cp, &ctx), LMPRESS_OK);
  std::vector<int32_t> many(17, 1);
  fails(lmpress_context_eval(ctx, many.data(), many.size(), false), F, "do not fit the context");
  EXPECT_EQ(lmpress_context_n_past(ctx), 0);
  tok = -4;
  fails(lmpress_context_eval(ctx, &tok, 1, false), I, "token -4");
  fails(lmpress_context_truncate(ctx, 3), I, "3 positions asked to keep, 0 evaluated");
  lmpress_context_free(ctx);
  lmpress_generate_params g = lmpress_generate_default_params();
  g.sampling.penalty_last_n = -7;
  fails(lmpress_generate(h.m, "a", &g, nullptr), I, "penalty_last_n");
  lmpress_perplexity_params pp = lmpress_perplexity_default_params();
  pp.protocol = "lambada";
  fails(lmpress_perplexity(h.m, "a b c", 5, &pp, nullptr), I, "result is NULL");
  lmpress_perplexity_result pr;
  fails(lmpress_perplexity(h.m, "a b c", 5, &pp, &pr), F, "lambada");
  lmpress_quantize_params q = lmpress_quantize_default_params();
  q.type = "q4_k_x";
  fails(lmpress_quantize(model_dir().c_str(), "/tmp/never.gguf", &q), F, "q4_k_x");
  q.type = "q8_0";
  q.method = "gptq";
  fails(lmpress_quantize(model_dir().c_str(), "/tmp/never.gguf", &q), F, "needs calibration text");
  q.method = nullptr;
  const std::string inside = model_dir() + "/model.safetensors";
  fails(lmpress_quantize(model_dir().c_str(), inside.c_str(), &q), F, "in_path");
  q.compensate = "rank=0";
  fails(lmpress_quantize(model_dir().c_str(), "/tmp/never.gguf", &q), F, "rank must be a whole number");
  q.compensate = "rank=4";
  const std::string gguf_inside = model_dir() + "/lmp-8m-f32.gguf";
  q.compensate_out = gguf_inside.c_str();  // the adapter path is guarded like the output
  fails(lmpress_quantize(model_dir().c_str(), "/tmp/never.gguf", &q), F, "compensate_out");
  q.compensate = q.compensate_out = nullptr;
  lmpress_prune_params pq = lmpress_prune_default_params();
  pq.nm = "2:4";
  pq.compensate = "rank=4";
  fails(lmpress_prune(model_dir().c_str(), "/tmp/never.gguf", &pq), F, "--method wanda or sparsegpt");
  pq = lmpress_prune_default_params();
  pq.experts = "2";
  pq.nm = "2:4";
  fails(lmpress_prune(model_dir().c_str(), "/tmp/never.gguf", &pq), I, "experts removes whole experts");
  pq.nm = nullptr;
  pq.owl_m = 0;
  fails(lmpress_prune(model_dir().c_str(), "/tmp/never.gguf", &pq), I, "owl_m 0");
  fails(lmpress_convert_model(nullptr, "/tmp/never.gguf", nullptr), I, "lmpress_convert_model: in_path is NULL");
  fails(lmpress_lowrank(model_dir().c_str(), nullptr, nullptr), I, "lmpress_lowrank: out_path is NULL");
  fails(lmpress_convert_model(model_dir().c_str(), nullptr, nullptr), I, "out_path is NULL");
  lmpress_convert_params cvp = lmpress_convert_default_params();
  cvp.kv_heads = -1;
  fails(lmpress_convert_model(model_dir().c_str(), "/tmp/never.gguf", &cvp), I, "kv_heads -1");
  const char* no_lora[] = {nullptr};
  lmpress_model_params mp = lmpress_model_default_params();
  mp.lora = no_lora;
  mp.n_lora = 1;
  fails(lmpress_model_load(model_dir().c_str(), &mp, &m), I, "lora[0] is NULL");
  mp.lora = nullptr;
  fails(lmpress_model_load(model_dir().c_str(), &mp, &m), I, "lora is NULL but n_lora is 1");
  EXPECT_FALSE(std::filesystem::exists("/tmp/never.gguf"));
  lmpress_engine_params ep = lmpress_engine_default_params();
  ep.token_budget = 0;
  fails(lmpress_engine_create(h.m, &ep, &e), I, "token_budget 0");
  ASSERT_EQ(lmpress_engine_create(h.m, nullptr, &e), LMPRESS_OK);
  std::vector<int32_t> too_long(4096, 1);
  fails(lmpress_engine_submit(e, 1, too_long.data(), too_long.size(), nullptr), F, "does not fit the model's context");
  lmpress_request_params rp = lmpress_request_default_params();
  rp.max_tokens = 0;
  fails(lmpress_engine_submit(e, 1, &tok, 1, &rp), I, "max_tokens 0");
  EXPECT_EQ(lmpress_engine_n_requests(e), 0u);
  lmpress_engine_free(e);
  lmpress_chat_message msg{"user", nullptr};
  fails(lmpress_chat_apply_template(nullptr, "chatml", &msg, 1, true, buf, sizeof buf, &n), I,
        "messages[0].content is NULL");
  msg.content = "hi";
  fails(lmpress_chat_apply_template(nullptr, "chatml", &msg, 1, true, buf, sizeof buf, &n),
        LMPRESS_ERR_BUFFER_TOO_SMALL, "bytes with its NUL");
  char big[256];
  ASSERT_EQ(lmpress_chat_apply_template(nullptr, "chatml", &msg, 1, true, big, sizeof big, &n), LMPRESS_OK);
  EXPECT_STREQ(big, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

// The functions the header declares, from its text.
std::set<std::string> declared_functions() {
  const std::string h = lmpress::read_text_file(std::string(LMPRESS_SOURCE_DIR) + "/include/lmpress.h");
  std::set<std::string> names;
  const std::regex decl(R"(LMPRESS_API[^;(]*\b(lmpress_\w+)\s*\()");
  for (auto it = std::sregex_iterator(h.begin(), h.end(), decl); it != std::sregex_iterator(); ++it)
    names.insert((*it)[1]);
  return names;
}

TEST(CApi, SharedLibraryExportsTheApiAndNothingElse) {
  auto r = shell(std::string("nm -D --defined-only ") + LMPRESS_SHARED_LIB);
  ASSERT_EQ(r.status, 0) << r.out;
  std::set<std::string> exported;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    std::string name = line.substr(line.rfind(' ') + 1);
    name = name.substr(0, name.find('@'));  // lmpress_x@@LMPRESS_0: its version
    if (name == "LMPRESS_0") continue;  // the symbol version node (src/api/lmpress.map)
    EXPECT_EQ(name.rfind("lmpress_", 0), 0u) << "exported: " << name;
    exported.insert(name);
  }
  const std::set<std::string> declared = declared_functions();
  EXPECT_GE(declared.size(), 30u);
  EXPECT_EQ(exported, declared);
  auto so = shell(std::string("readelf -d ") + LMPRESS_SHARED_LIB + " | grep SONAME");
  EXPECT_NE(so.out.find("liblmpress.so." + std::to_string(LMPRESS_VERSION_MAJOR)), std::string::npos) << so.out;
}

// `cmake --install`, then the example built against the installed files the
// two ways users do: pkg-config, and find_package(lmpress) in a CMake project.
TEST(CApi, InstalledLibraryBuildsWithPkgConfigAndFindPackage) {
  if (!lmpress::test::have_shared("models/lmp-8m")) GTEST_SKIP();
  const std::string d = lmpress::test::temp_dir(), prefix = d + "/prefix";
  auto r = shell("cmake --install " + std::string(LMPRESS_BUILD_DIR) + " --prefix " + prefix + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.out;
  const std::string src = std::string(LMPRESS_SOURCE_DIR) + "/examples/c";
  r = shell("cd " + d + " && export PKG_CONFIG_PATH=$(dirname $(find " + prefix +
            " -name lmpress.pc)) && cc -std=c99 -Wall -Wpedantic -Werror " + src +
            "/generate.c $(pkg-config --cflags --libs lmpress) -Wl,-rpath,$(pkg-config --variable=libdir lmpress)"
            " -o pc-generate 2>&1");
  ASSERT_EQ(r.status, 0) << r.out;
  r = shell("cmake -S " + src + " -B " + d + "/cm -G Ninja -DCMAKE_PREFIX_PATH=" + prefix +
            " > /dev/null 2>&1 && cmake --build " + d + "/cm 2>&1");
  ASSERT_EQ(r.status, 0) << r.out;
  const std::vector<int32_t> want = cli_tokens("It was", 8);
  for (const std::string& exe : {d + "/pc-generate", d + "/cm/generate"}) {
    r = shell(exe + " " + model_dir() + " 'It was' 8 2>&1 >/dev/null");
    ASSERT_EQ(r.status, 0) << exe << ": " << r.out;
    EXPECT_EQ(example_tokens(r.out), want) << exe;
  }
}

}  // namespace

namespace {

TEST(CApi, EngineServesRequestsAsGenerateDoes) {
  if (!lmpress::test::have_shared("models/lmp-8m")) GTEST_SKIP();
  ModelHandle h;
  lmpress_engine_params ep = lmpress_engine_default_params();
  ep.max_running = 2;  // four requests: two wait, then take the freed places
  ep.token_budget = 16;  // prompts go in chunks beside decoding steps
  lmpress_engine* e = nullptr;
  ASSERT_EQ(lmpress_engine_create(h.m, &ep, &e), LMPRESS_OK) << lmpress_last_error();
  const std::vector<std::string> prompts = {"Once upon a time", "The little dog", "She said that the weather was",
                                            "It was"};
  const std::vector<int64_t> lengths = {12, 5, 9, 7};
  std::map<int64_t, std::vector<int32_t>> got;
  std::map<int64_t, lmpress_finish_reason> finished;
  for (size_t i = 0; i < prompts.size(); i++) {
    const auto ids = tokenize(h.m, prompts[i]);
    lmpress_request_params rp = lmpress_request_default_params();
    rp.max_tokens = lengths[i];
    rp.ignore_eos = true;
    if (i == 0) rp.logprobs = 3;
    ASSERT_EQ(lmpress_engine_submit(e, int64_t(100 + i), ids.data(), ids.size(), &rp), LMPRESS_OK)
        << lmpress_last_error();
  }
  EXPECT_EQ(lmpress_engine_n_requests(e), 4u);
  const int32_t t = 1;
  EXPECT_EQ(lmpress_engine_submit(e, 100, &t, 1, nullptr), LMPRESS_ERR_FAILED) << "an id in use";
  EXPECT_EQ(lmpress_engine_cancel(e, 7), LMPRESS_ERR_FAILED);
  lmpress_request_params bad = lmpress_request_default_params();
  EXPECT_EQ(bad.logprobs, -1);
  bad.logprobs = 21;
  EXPECT_EQ(lmpress_engine_submit(e, 200, &t, 1, &bad), LMPRESS_ERR_INVALID_ARGUMENT);
  std::vector<float> first_logprobs;  // request 100's first token: its own, then its top 3
  int steps = 0;
  while (lmpress_engine_n_requests(e) > 0 && steps++ < 1000) {
    const lmpress_step_event* ev = nullptr;
    size_t n = 0;
    ASSERT_EQ(lmpress_engine_step(e, &ev, &n), LMPRESS_OK) << lmpress_last_error();
    for (size_t k = 0; k < n; k++) {
      if (ev[k].token >= 0 && ev[k].request_id == 100) {
        // Greedy: the token is the most likely one; the top 3 in decreasing order; none for other requests.
        ASSERT_EQ(ev[k].n_top, 3u);
        EXPECT_EQ(ev[k].top_ids[0], ev[k].token);
        EXPECT_EQ(ev[k].top_logprobs[0], ev[k].logprob);
        EXPECT_GE(ev[k].top_logprobs[0], ev[k].top_logprobs[1]);
        EXPECT_GE(ev[k].top_logprobs[1], ev[k].top_logprobs[2]);
        EXPECT_LE(ev[k].logprob, 0.0f);
        if (first_logprobs.empty()) first_logprobs = {ev[k].logprob, ev[k].top_logprobs[1], ev[k].top_logprobs[2]};
      } else if (ev[k].token >= 0) {
        EXPECT_EQ(ev[k].n_top, 0u);
      }
      if (ev[k].token >= 0) got[ev[k].request_id].push_back(ev[k].token);
      if (ev[k].finished != LMPRESS_FINISH_NONE) finished[ev[k].request_id] = ev[k].finished;
    }
  }
  for (size_t i = 0; i < prompts.size(); i++) {
    auto r = run_cli("generate " + model_dir() + " -p '" + prompts[i] + "' -n " + std::to_string(lengths[i]) +
                     " --ignore-eos --json");
    ASSERT_EQ(r.status, 0) << r.out;
    const auto want = nlohmann::json::parse(r.out.substr(r.out.find('{')))["tokens"].get<std::vector<int32_t>>();
    EXPECT_EQ(got[int64_t(100 + i)], want) << prompts[i];
    EXPECT_EQ(finished[int64_t(100 + i)], LMPRESS_FINISH_LENGTH);
  }
  lmpress_engine_free(e);
  // The first token's log probabilities, from the prompt's last logits by a log-softmax in double.
  lmpress_context* ctx = nullptr;
  ASSERT_EQ(lmpress_context_create(h.m, nullptr, &ctx), LMPRESS_OK) << lmpress_last_error();
  const auto ids = tokenize(h.m, prompts[0]);
  ASSERT_EQ(lmpress_context_eval(ctx, ids.data(), ids.size(), false), LMPRESS_OK) << lmpress_last_error();
  size_t rows = 0;
  const float* logits = lmpress_context_logits(ctx, &rows);
  lmpress_model_info mi;
  ASSERT_EQ(lmpress_model_get_info(h.m, &mi), LMPRESS_OK);
  ASSERT_EQ(rows, 1u);
  std::vector<double> lp(logits, logits + mi.n_vocab);
  const double mx = *std::max_element(lp.begin(), lp.end());
  double sum = 0;
  for (double x : lp) sum += std::exp(x - mx);
  for (double& x : lp) x = x - mx - std::log(sum);
  std::sort(lp.begin(), lp.end(), std::greater<double>());
  ASSERT_EQ(first_logprobs.size(), 3u);
  for (int i = 0; i < 3; i++) EXPECT_NEAR(first_logprobs[size_t(i)], lp[size_t(i)], 2e-3) << i;
  lmpress_context_free(ctx);
}

TEST(CApi, KldOfACacheTypeEqualsTheCli) {
  if (!lmpress::test::have_shared("models/lmp-8m-w256")) GTEST_SKIP();
  const std::string m = shared_path("models/lmp-8m-w256");
  auto r = run_cli("kld " + m + " " + m + " -f " + wiki() +
                   " --ctx 128 --chunks 2 --base-cache-type f32 --cache-type q4_0 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto cli = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  lmpress_model* model = nullptr;
  ASSERT_EQ(lmpress_model_load(m.c_str(), nullptr, &model), LMPRESS_OK) << lmpress_last_error();
  const std::string text = lmpress::read_text_file(wiki());
  lmpress_kld_params p = lmpress_kld_default_params();
  p.n_ctx = 128;
  p.n_chunks = 2;
  p.base_cache.type_k = p.base_cache.type_v = "f32";
  p.cache.type_k = p.cache.type_v = "q4_0";
  lmpress_kld_result res;
  ASSERT_EQ(lmpress_kld(model, model, text.data(), text.size(), &p, &res), LMPRESS_OK) << lmpress_last_error();
  EXPECT_GT(res.kld, 0.0);
  EXPECT_DOUBLE_EQ(res.kld, cli["kld"]["value"].get<double>()) << cli.dump();
  EXPECT_EQ(res.n_chunks, 2);
  lmpress_model_free(model);
}

}  // namespace


namespace {

TEST(CApi, PruneAndConvertWriteTheCliBytes) {
  if (!lmpress::test::have_shared("models/lmp-8m")) GTEST_SKIP();
  const std::string d = lmpress::test::temp_dir(), calib = shared_path("data/calib/docs-calib.txt");
  lmpress_prune_params p = lmpress_prune_default_params();
  p.method = "sparsegpt";
  p.nm = "2:4";
  p.calib_path = calib.c_str();
  p.calib_samples = 4;
  p.calib_ctx = 64;
  ASSERT_EQ(lmpress_prune(model_dir().c_str(), (d + "/api.gguf").c_str(), &p), LMPRESS_OK) << lmpress_last_error();
  auto r = run_cli("prune " + model_dir() + " " + d + "/cli.gguf --method sparsegpt --nm 2:4 --calib " + calib +
                   " --calib-samples 4 --calib-ctx 64");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(lmpress::read_text_file(d + "/api.gguf"), lmpress::read_text_file(d + "/cli.gguf"));
  p.calib_path = nullptr;
  EXPECT_EQ(lmpress_prune(model_dir().c_str(), (d + "/x.gguf").c_str(), &p), LMPRESS_ERR_FAILED);
  EXPECT_NE(std::string(lmpress_last_error()).find("needs calibration text"), std::string::npos) << lmpress_last_error();
  ASSERT_EQ(lmpress_convert(model_dir().c_str(), (d + "/api-f16.gguf").c_str(), "f16", nullptr), LMPRESS_OK)
      << lmpress_last_error();
  ASSERT_EQ(run_cli("convert " + model_dir() + " " + d + "/cli-f16.gguf --dtype f16").status, 0);
  EXPECT_EQ(lmpress::read_text_file(d + "/api-f16.gguf"), lmpress::read_text_file(d + "/cli-f16.gguf"));
  EXPECT_EQ(lmpress_convert(model_dir().c_str(), (d + "/y.gguf").c_str(), "q7_0", nullptr), LMPRESS_ERR_FAILED);
  EXPECT_NE(std::string(lmpress_last_error()).find("--dtype 'q7_0'"), std::string::npos) << lmpress_last_error();
  EXPECT_FALSE(std::filesystem::exists(d + "/y.gguf"));
}

// API version 7: structured pruning, module targets, per-tensor types and speculative decoding, each the
// command line's result.
TEST(CApi, StructuredPruningTargetsAndTensorTypesAsTheCli) {
  if (!lmpress::test::have_shared("models/lmp-8m")) GTEST_SKIP();
  const std::string d = lmpress::test::temp_dir(), calib = shared_path("data/calib/docs-calib.txt");
  lmpress_prune_params p = lmpress_prune_default_params();
  p.structured = "heads=0.25,ffn=0.3";
  p.calib_path = calib.c_str();
  p.calib_samples = 4;
  p.calib_ctx = 64;
  ASSERT_EQ(lmpress_prune(model_dir().c_str(), (d + "/s-api.gguf").c_str(), &p), LMPRESS_OK) << lmpress_last_error();
  auto r = run_cli("prune " + model_dir() + " " + d + "/s-cli.gguf --structured heads=0.25,ffn=0.3 --calib " + calib +
                   " --calib-samples 4 --calib-ctx 64");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(lmpress::read_text_file(d + "/s-api.gguf"), lmpress::read_text_file(d + "/s-cli.gguf"));
  p.nm = "2:4";
  EXPECT_EQ(lmpress_prune(model_dir().c_str(), (d + "/x.gguf").c_str(), &p), LMPRESS_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lmpress_last_error()).find("structured removes whole heads"), std::string::npos);
  p.nm = nullptr;
  p.method = "wanda";
  EXPECT_EQ(lmpress_prune(model_dir().c_str(), (d + "/x.gguf").c_str(), &p), LMPRESS_ERR_INVALID_ARGUMENT);
  EXPECT_FALSE(std::filesystem::exists(d + "/x.gguf"));
  // Targets and ignore lists.
  lmpress_prune_params t = lmpress_prune_default_params();
  t.sparsity = 0.5;
  const char* targets[] = {"re:model\\.layers\\.[0-2]\\."};
  const char* ignore[] = {"model.layers.1.mlp"};
  t.targets = targets, t.n_targets = 1, t.ignore = ignore, t.n_ignore = 1;
  ASSERT_EQ(lmpress_prune(model_dir().c_str(), (d + "/t-api.gguf").c_str(), &t), LMPRESS_OK) << lmpress_last_error();
  r = run_cli("prune " + model_dir() + " " + d + "/t-cli.gguf --sparsity 0.5 --targets 're:model\\.layers\\.[0-2]\\.' "
              "--ignore model.layers.1.mlp");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(lmpress::read_text_file(d + "/t-api.gguf"), lmpress::read_text_file(d + "/t-cli.gguf"));
  t.n_targets = 2;
  t.targets = nullptr;
  EXPECT_EQ(lmpress_prune(model_dir().c_str(), (d + "/x.gguf").c_str(), &t), LMPRESS_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lmpress_last_error()).find("targets is NULL but n_targets is 2"), std::string::npos);
  // Per-tensor types of an int-N checkpoint.
  lmpress_quantize_params q = lmpress_quantize_default_params();
  q.type = "int4-g32";
  const char* types[] = {"ffn_down=int8-ch"};
  const char* skip[] = {"model.layers.0.self_attn"};
  q.tensor_types = types, q.n_tensor_types = 1, q.ignore = skip, q.n_ignore = 1;
  ASSERT_EQ(lmpress_quantize(model_dir().c_str(), (d + "/q-api").c_str(), &q), LMPRESS_OK) << lmpress_last_error();
  r = run_cli("quantize " + model_dir() + " " + d + "/q-cli --type int4-g32 --tensor-type ffn_down=int8-ch --ignore "
              "model.layers.0.self_attn");
  ASSERT_EQ(r.status, 0) << r.out;
  for (const char* f : {"model.safetensors", "config.json"})
    EXPECT_TRUE(lmpress::read_text_file(d + "/q-api/" + f) == lmpress::read_text_file(d + "/q-cli/" + f)) << f;
  const char* bad[] = {nullptr};
  q.tensor_types = bad;
  EXPECT_EQ(lmpress_quantize(model_dir().c_str(), (d + "/q-x").c_str(), &q), LMPRESS_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lmpress_last_error()).find("tensor_types[0] is NULL"), std::string::npos);
}

TEST(CApi, SpeculativeGenerationEqualsPlainGreedy) {
  if (!lmpress::test::have_shared("models/lmp-8m")) GTEST_SKIP();
  ModelHandle h;
  // A prompt that repeats itself, so that prompt lookup has drafts to offer.
  const std::string prompt = "The cat sat on the mat. The dog sat on the log. The cat sat on the mat. The dog";
  auto run = [&](const char* spec, lmpress_generate_result* res) {
    std::vector<int32_t> ids;
    lmpress_generate_params g = lmpress_generate_default_params();
    g.n_predict = 40;
    g.ignore_eos = true;
    g.spec.type = spec;
    g.spec.draft_max = 4;
    g.spec.p_min = 0;  // lmp-8m is rarely sure of a token: let the self-draft propose anyway
    g.on_token = [](int32_t id, const char*, size_t, void* u) {
      if (id >= 0) static_cast<std::vector<int32_t>*>(u)->push_back(id);  // -1: held-back bytes at the end
      return true;
    };
    g.user_data = &ids;
    EXPECT_EQ(lmpress_generate(h.m, prompt.c_str(), &g, res), LMPRESS_OK) << lmpress_last_error();
    return ids;
  };
  lmpress_generate_result plain{}, ngram{}, self{};
  plain.n_drafted = plain.n_accepted = -1;  // written by the call
  const auto want = run(nullptr, &plain);
  ASSERT_EQ(want.size(), 40u);
  EXPECT_EQ(plain.n_drafted, 0);
  EXPECT_EQ(run("ngram", &ngram), want);
  EXPECT_GT(ngram.n_drafted, 0);
  EXPECT_GT(ngram.n_accepted, 0);
  EXPECT_LE(ngram.n_accepted, ngram.n_drafted);
  EXPECT_EQ(run("self:skip:2-3", &self), want);
  EXPECT_GT(self.n_drafted, 0);
  // The command line's counts for the same run.
  auto r = run_cli("generate " + model_dir() + " -p '" + prompt +
                   "' -n 40 --ignore-eos --spec ngram --draft-max 4 --draft-p-min 0 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(j["tokens"].get<std::vector<int32_t>>(), want);
  EXPECT_EQ(j["spec"]["drafted"].get<int64_t>(), ngram.n_drafted) << j["spec"].dump();
  EXPECT_EQ(j["spec"]["accepted"].get<int64_t>(), ngram.n_accepted);
  // The report is the command line's --json without the prompt and text.
  const auto report = nlohmann::json::parse(lmpress_last_report());
  EXPECT_EQ(report["spec"]["type"], "self:skip:2-3");
  EXPECT_EQ(report["tokens"].get<std::vector<int32_t>>(), want);
  EXPECT_EQ(report["spec"]["drafted"].get<int64_t>(), self.n_drafted);
  // Blocks to skip ranked on calibration text, as --spec self:skip:auto:N --spec-calib.
  lmpress_generate_params g = lmpress_generate_default_params();
  const std::string calib = shared_path("data/calib/docs-calib.txt");
  g.n_predict = 40;
  g.ignore_eos = true;
  g.spec.type = "self:skip:auto:2";
  g.spec.calib_path = calib.c_str();
  g.spec.draft_max = 4;
  g.spec.p_min = 0;
  std::vector<int32_t> ids;
  g.on_token = [](int32_t id, const char*, size_t, void* u) {
    if (id >= 0) static_cast<std::vector<int32_t>*>(u)->push_back(id);
    return true;
  };
  g.user_data = &ids;
  ASSERT_EQ(lmpress_generate(h.m, prompt.c_str(), &g, nullptr), LMPRESS_OK) << lmpress_last_error();
  EXPECT_EQ(ids, want);
  const auto ranked = nlohmann::json::parse(lmpress_last_report());
  EXPECT_EQ(ranked["spec"]["type"].get<std::string>().rfind("self:skip:", 0), 0u) << ranked["spec"];
  EXPECT_NE(ranked["spec"]["skip_ranking"].get<std::string>().find("skipping blocks"), std::string::npos);
  // What it refuses.
  g = lmpress_generate_default_params();
  g.spec.type = "self:skip:auto:2";
  EXPECT_EQ(lmpress_generate(h.m, "x", &g, nullptr), LMPRESS_ERR_FAILED);
  EXPECT_NE(std::string(lmpress_last_error()).find("--spec-calib"), std::string::npos);
  g.spec.type = "ngram";
  g.spec.draft_max = 0;
  EXPECT_EQ(lmpress_generate(h.m, "x", &g, nullptr), LMPRESS_ERR_FAILED);
  EXPECT_NE(std::string(lmpress_last_error()).find("--draft-max 0"), std::string::npos);
  g.spec.draft_max = 4;
  g.spec.draft_min = 5;
  EXPECT_EQ(lmpress_generate(h.m, "x", &g, nullptr), LMPRESS_ERR_FAILED);
  EXPECT_NE(std::string(lmpress_last_error()).find("--draft-min 5"), std::string::npos);
  g.spec.draft_min = 0;
  g.spec.type = "draft:/no/such/model.gguf";
  EXPECT_EQ(lmpress_generate(h.m, "x", &g, nullptr), LMPRESS_ERR_FAILED);
  lmpress_generation* gen = nullptr;
  g.spec.type = "ngram";
  EXPECT_EQ(lmpress_generation_start(h.m, "x", &g, &gen), LMPRESS_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lmpress_last_error()).find("runs in lmpress_generate"), std::string::npos);
  EXPECT_EQ(gen, nullptr);
}

// lmpress_set_threads on one thread reaches the calls another thread makes.
TEST(CApi, ThreadCountReachesEveryCallingThread) {
  if (!lmpress::test::have_shared("models/lmp-8m")) GTEST_SKIP();
  if (omp_get_num_procs() < 2) GTEST_SKIP() << "one core";
  ModelHandle h;
  ASSERT_EQ(lmpress_set_threads(1), LMPRESS_OK);
  int seen = 0;
  std::thread t([&] {
    lmpress_context* ctx = nullptr;
    ASSERT_EQ(lmpress_context_create(h.m, nullptr, &ctx), LMPRESS_OK);
    const int32_t tok = 1;
    ASSERT_EQ(lmpress_context_eval(ctx, &tok, 1, false), LMPRESS_OK);
    seen = omp_get_max_threads();
    lmpress_context_free(ctx);
  });
  t.join();
  EXPECT_EQ(seen, 1);
  ASSERT_EQ(lmpress_set_threads(0), LMPRESS_OK);
}

}  // namespace

namespace {

// Stepped generation gives lmpress_generate's tokens and text, greedy and sampled with penalties.
TEST(CApi, SteppedGenerationEqualsGenerate) {
  if (!lmpress::test::have_shared("models/lmp-8m")) GTEST_SKIP();
  ModelHandle h;
  for (const bool sampled : {false, true}) {
    lmpress_generate_params g = lmpress_generate_default_params();
    g.n_predict = 40;
    if (sampled) {
      g.sampling.temperature = 0.9f;
      g.sampling.seed = 1234;
      g.sampling.repeat_penalty = 1.3f;
      g.sampling.presence_penalty = 0.2f;
    }
    struct Seen {
      std::vector<int32_t> ids;
      std::string text;
    } want;
    g.on_token = [](int32_t id, const char* text, size_t len, void* u) {
      if (id >= 0) static_cast<Seen*>(u)->ids.push_back(id);
      static_cast<Seen*>(u)->text.append(text, len);
      return true;
    };
    g.user_data = &want;
    lmpress_generate_result wr;
    ASSERT_EQ(lmpress_generate(h.m, "The old man", &g, &wr), LMPRESS_OK) << lmpress_last_error();
    lmpress_generation* gen = nullptr;
    ASSERT_EQ(lmpress_generation_start(h.m, "The old man", &g, &gen), LMPRESS_OK) << lmpress_last_error();
    Seen got;
    lmpress_generate_result r;
    ASSERT_EQ(lmpress_generation_result(gen, &r), LMPRESS_OK);
    EXPECT_EQ(r.stop_reason, LMPRESS_STOP_CALLER);
    for (;;) {
      int32_t id;
      const char* text;
      size_t len;
      bool done;
      ASSERT_EQ(lmpress_generation_next(gen, &id, &text, &len, &done), LMPRESS_OK) << lmpress_last_error();
      got.text.append(text, len);  // when done: the bytes held back
      if (done) break;
      got.ids.push_back(id);
    }
    EXPECT_EQ(got.ids, want.ids) << "sampled " << sampled;
    EXPECT_EQ(got.text, want.text);
    ASSERT_EQ(lmpress_generation_result(gen, &r), LMPRESS_OK);
    EXPECT_EQ(r.stop_reason, wr.stop_reason);
    EXPECT_EQ(r.n_generated, wr.n_generated);
    lmpress_generation_free(gen);
  }
  // Freed halfway: nothing else to do.
  lmpress_generation* gen = nullptr;
  ASSERT_EQ(lmpress_generation_start(h.m, "The", nullptr, &gen), LMPRESS_OK);
  int32_t id;
  bool done;
  ASSERT_EQ(lmpress_generation_next(gen, &id, nullptr, nullptr, &done), LMPRESS_OK);
  EXPECT_FALSE(done);
  lmpress_generation_free(gen);
  EXPECT_EQ(lmpress_generation_next(nullptr, &id, nullptr, nullptr, &done), LMPRESS_ERR_INVALID_ARGUMENT);
}

}  // namespace
