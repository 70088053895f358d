#include "eval/tasks.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/json_file.h"
#include "model/forward.h"

namespace lmpress {

namespace {

std::string field_string(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.contains(key)) fail("{}: missing field \"{}\"", where, key);
  if (!j[key].is_string()) fail("{}: field \"{}\" is not a string", where, key);
  return j[key].get<std::string>();
}

TaskItem parse_item(const nlohmann::json& j, TaskKind kind, const std::string& where) {
  if (!j.is_object()) fail("{}: not a JSON object", where);
  TaskItem it;
  if (kind == TaskKind::Lambada) {
    it.context = field_string(j, "context", where);
    it.choices = {field_string(j, "continuation", where)};
    if (it.choices[0].empty()) fail("{}: empty \"continuation\"", where);
    return it;
  }
  it.context = field_string(j, "query", where);
  if (!j.contains("choices") || !j["choices"].is_array())
    fail("{}: \"choices\" must be an array of strings", where);
  if (j["choices"].size() < 2)
    fail("{}: \"choices\" has {} entries; a multiple-choice item needs at least 2", where, j["choices"].size());
  for (const auto& c : j["choices"]) {
    if (!c.is_string() || c.get<std::string>().empty()) fail("{}: every choice must be a non-empty string", where);
    it.choices.push_back(c.get<std::string>());
  }
  if (!j.contains("gold") || !j["gold"].is_number_integer()) fail("{}: missing integer field \"gold\"", where);
  it.gold = j["gold"].get<int64_t>();
  if (it.gold < 0 || it.gold >= int64_t(it.choices.size()))
    fail("{}: gold index {} is out of range for {} choices", where, it.gold, it.choices.size());
  return it;
}

// log softmax of one row at `target`; also whether target is the argmax.
std::pair<double, bool> log_prob(const float* logits, int64_t n, int32_t target) {
  int64_t imax = 0;
  for (int64_t i = 1; i < n; i++)
    if (logits[i] > logits[imax]) imax = i;
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += std::exp(double(logits[i]) - logits[imax]);
  return {double(logits[target]) - logits[imax] - std::log(sum), logits[target] == logits[imax]};
}

// Scores `cont` after the tokens the state holds; `last` holds the logits of
// the last of them. The state is rolled back to where it started.
ContinuationScore score_continuation(InferenceState& st, const std::vector<int32_t>& cont,
                                     const std::vector<float>& last, std::vector<float>& rows, int64_t V) {
  ContinuationScore s;
  s.n_tokens = int64_t(cont.size());
  auto [lp0, g0] = log_prob(last.data(), V, cont[0]);
  s.loglik = lp0;
  s.is_greedy = g0;
  if (cont.size() > 1) {
    const int64_t prefix = st.n_past();
    rows.resize((cont.size() - 1) * size_t(V));
    st.eval(cont.data(), int64_t(cont.size()) - 1, rows.data(), true);
    st.truncate(prefix);
    for (size_t k = 1; k < cont.size(); k++) {
      auto [lp, g] = log_prob(rows.data() + (k - 1) * size_t(V), V, cont[k]);
      s.loglik += lp;
      s.is_greedy = s.is_greedy && g;
    }
  }
  return s;
}

ValueErr mean_stderr(const std::vector<double>& v) {
  ValueErr r;
  const double n = double(v.size());
  for (double x : v) r.value += x / n;
  if (v.size() < 2) return r;
  double ss = 0;
  for (double x : v) ss += (x - r.value) * (x - r.value);
  r.stderr_ = std::sqrt(ss / (n - 1) / n);
  return r;
}

}  // namespace

Task read_task_file(const std::string& path, const std::string& name, int64_t limit) {
  return parse_task_text(read_text_file(path), path, name, limit);
}

Task parse_task_text(const std::string& text, const std::string& path, const std::string& name, int64_t limit) {
  Task t;
  t.name = name;
  t.path = path;
  std::istringstream in(text);
  std::string line;
  int64_t line_no = 0;
  bool kind_known = false;
  while (std::getline(in, line)) {
    line_no++;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", path, line_no);
    const nlohmann::json j = parse_json(line, where);
    if (!kind_known) {
      if (j.is_object() && j.contains("continuation") && !j.contains("choices")) t.kind = TaskKind::Lambada;
      else if (!j.is_object() || !j.contains("choices"))
        fail("{}: neither a multiple-choice item {{\"query\",\"choices\",\"gold\"}} nor a LAMBADA item "
             "{{\"context\",\"continuation\"}}",
             where);
      kind_known = true;
    }
    t.items.push_back(parse_item(j, t.kind, where));
    t.items.back().line = line_no;
    if (limit > 0 && int64_t(t.items.size()) >= limit) break;
  }
  if (t.items.empty()) fail("{}: the task file has no items", path);
  return t;
}

Task load_task(const std::string& name_or_path, const std::string& task_dir, int64_t limit) {
  namespace fs = std::filesystem;
  if (fs::is_regular_file(name_or_path))
    return read_task_file(name_or_path, fs::path(name_or_path).stem().string(), limit);
  const std::string name = name_or_path == "lambada" ? "lambada_openai" : name_or_path;
  const std::string path = (fs::path(task_dir) / (name + ".jsonl")).string();
  if (fs::is_regular_file(path)) return read_task_file(path, name, limit);
  std::string known;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(task_dir, ec))
    if (e.path().extension() == ".jsonl") known += (known.empty() ? "" : ", ") + e.path().stem().string();
  fail("unknown task '{}': not a file, and {} has {}", name_or_path, task_dir,
       known.empty() ? "no task files (--task-dir)" : "only " + known);
}

std::pair<std::vector<int32_t>, int64_t> task_request_tokens(const Model& m, const std::string& context,
                                                             const std::string& continuation) {
  if (!m.tokenizer) fail("{}: the model has no tokenizer", m.path);
  // The harness moves the context's trailing whitespace into the continuation.
  const size_t last = context.find_last_not_of(" \t\r\n");
  const size_t keep = last == std::string::npos ? 0 : last + 1;
  const std::string ctx = context.substr(0, keep), cont = context.substr(keep) + continuation;
  std::vector<int32_t> toks = m.tokenizer->encode(ctx, true, false);
  auto whole = m.tokenizer->encode(ctx + cont, true, false);
  if (toks.empty()) {  // no BOS and no context: condition on end-of-text, as the harness does
    const auto& v = m.tokenizer->vocab();
    toks.push_back(v.eos >= 0 ? v.eos : std::max(v.bos, 0));
    whole.insert(whole.begin(), toks[0]);
  }
  const int64_t n_ctx = int64_t(toks.size());
  if (int64_t(whole.size()) > n_ctx) {
    toks.insert(toks.end(), whole.begin() + n_ctx, whole.end());
  } else {  // the continuation merged into the context's last token: score it alone
    const auto alone = m.tokenizer->encode(cont, false, false);
    toks.insert(toks.end(), alone.begin(), alone.end());
  }
  if (int64_t(toks.size()) == n_ctx) fail("task: the continuation '{}' has no tokens", continuation);
  return {toks, n_ctx};
}

TaskResult evaluate_task(const Model& m, const Task& task, const std::function<void(int64_t)>& on_item) {
  const int64_t V = m.cfg.n_vocab;
  const int64_t max_len = m.cfg.ctx_len > 0 ? m.cfg.ctx_len : 2048;
  InferenceState st(m, max_len, 512);
  std::vector<float> last(static_cast<size_t>(V)), rows;
  TaskResult r;
  r.name = task.name;
  r.kind = task.kind;
  r.n = int64_t(task.items.size());
  std::vector<double> acc, acc_norm, loglik;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < task.items.size(); i++) {
    const TaskItem& it = task.items[i];
    std::vector<std::vector<int32_t>> conts;
    std::vector<int32_t> ctx;
    size_t longest = 0;
    for (const auto& c : it.choices) {
      auto [toks, n_ctx] = task_request_tokens(m, it.context, " " + c);
      if (ctx.empty()) ctx.assign(toks.begin(), toks.begin() + n_ctx);
      conts.emplace_back(toks.begin() + n_ctx, toks.end());
      longest = std::max(longest, conts.back().size());
    }
    if (int64_t(longest) > max_len) {
      const std::string where = it.line > 0 ? fmt::format("{}:{}", task.path, it.line) : fmt::format("item {}", i);
      fail("task {}: {}: a choice has {} tokens, more than the model's context of {}", task.name, where, longest,
           max_len);
    }
    ItemResult ir;
    if (int64_t(ctx.size() + longest) - 1 <= max_len) {
      // The context once; each choice continues from its cached state.
      st.reset();
      st.eval(ctx.data(), int64_t(ctx.size()), last.data(), false);
      for (const auto& cont : conts) ir.scores.push_back(score_continuation(st, cont, last, rows, V));
    } else {
      // Too long for the window: each request cut from the left, as the harness does; the
      // continuation fits, so the window keeps at least the context's last token.
      const int64_t n_ctx = int64_t(ctx.size());
      for (const auto& cont : conts) {
        const int64_t start = std::max<int64_t>(0, n_ctx + int64_t(cont.size()) - 1 - max_len);
        st.reset();
        st.eval(ctx.data() + start, n_ctx - start, last.data(), false);
        ir.scores.push_back(score_continuation(st, cont, last, rows, V));
      }
    }
    for (size_t c = 0; c < ir.scores.size(); c++)
      if (!std::isfinite(ir.scores[c].loglik))
        fail("{}: item {}, choice {}: the log-likelihood is {}; the model's weights or activations are not finite",
             task.name, i + 1, c + 1, ir.scores[c].loglik);
    for (size_t c = 1; c < ir.scores.size(); c++) {
      if (ir.scores[c].loglik > ir.scores[size_t(ir.pred)].loglik) ir.pred = int64_t(c);
      if (ir.scores[c].loglik / double(it.choices[c].size()) >
          ir.scores[size_t(ir.pred_norm)].loglik / double(it.choices[size_t(ir.pred_norm)].size()))
        ir.pred_norm = int64_t(c);
    }
    if (task.kind == TaskKind::Lambada) {
      ir.acc = ir.acc_norm = ir.scores[0].is_greedy;
      loglik.push_back(ir.scores[0].loglik);
    } else {
      ir.acc = ir.pred == it.gold;
      ir.acc_norm = ir.pred_norm == it.gold;
    }
    acc.push_back(ir.acc);
    acc_norm.push_back(ir.acc_norm);
    r.items.push_back(std::move(ir));
    if (on_item) on_item(int64_t(i));
  }
  r.acc = mean_stderr(acc);
  if (task.kind == TaskKind::MultipleChoice) r.acc_norm = mean_stderr(acc_norm);
  else {
    const ValueErr ll = mean_stderr(loglik);
    r.ppl = {std::exp(-ll.value), std::exp(-ll.value) * ll.stderr_};
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace lmpress
