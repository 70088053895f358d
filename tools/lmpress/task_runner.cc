#include "task_runner.h"

#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "core/progress.h"

namespace lmpress::cli {

std::string default_task_dir() {
  const char* env = std::getenv("LMPRESS_TASK_DIR");
  return env && *env ? env : "../shared/data/tasks";
}

std::vector<std::string> split_task_list(const std::string& list) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t end = list.find(',', pos);
    if (end == std::string::npos) end = list.size();
    if (end > pos) out.push_back(list.substr(pos, end - pos));
    pos = end + 1;
  }
  if (out.empty()) fail("--tasks: no task named");
  return out;
}

std::vector<std::string> task_files(const std::string& list, const std::string& task_dir) {
  std::vector<std::string> out;
  if (list.empty()) return out;
  for (const auto& n : split_task_list(list)) {
    const std::string in_dir = task_dir + "/" + (n == "lambada" ? "lambada_openai" : n) + ".jsonl";
    for (const std::string& p : {n, in_dir})
      if (std::filesystem::is_regular_file(p)) out.push_back(p);
  }
  return out;
}

std::vector<Task> load_tasks(const std::vector<std::string>& names, const std::string& task_dir, int64_t limit) {
  std::vector<Task> tasks;
  for (const auto& n : names) tasks.push_back(load_task(n, task_dir, limit));
  return tasks;
}

TaskResult run_task(const Model& m, const Task& task) {
  Progress progress(task.name, uint64_t(task.items.size()));
  auto r = evaluate_task(m, task, [&](int64_t i) { progress.update(uint64_t(i + 1)); });
  progress.finish();
  return r;
}

nlohmann::ordered_json task_result_json(const TaskResult& r) {
  nlohmann::ordered_json j{{"n", r.n}, {"acc", r.acc.value}, {"acc_stderr", r.acc.stderr_}};
  if (r.kind == TaskKind::MultipleChoice) {
    j["acc_norm"] = r.acc_norm.value;
    j["acc_norm_stderr"] = r.acc_norm.stderr_;
  } else {
    j["ppl"] = r.ppl.value;
    j["ppl_stderr"] = r.ppl.stderr_;
  }
  j["seconds"] = r.seconds;
  return j;
}

void append_task_samples(std::string& out, const Task& task, const TaskResult& r) {
  for (size_t i = 0; i < r.items.size(); i++) {
    const TaskItem& it = task.items[i];
    const ItemResult& ir = r.items[i];
    nlohmann::ordered_json ll = nlohmann::json::array(), greedy = nlohmann::json::array(),
                           ntok = nlohmann::json::array();
    for (const auto& s : ir.scores) ll.push_back(s.loglik), greedy.push_back(s.is_greedy), ntok.push_back(s.n_tokens);
    nlohmann::ordered_json j{{"task", task.name}, {"doc_id", i}, {"context", it.context}, {"choices", it.choices}};
    if (task.kind == TaskKind::MultipleChoice) j["gold"] = it.gold;
    j["loglik"] = ll;
    j["is_greedy"] = greedy;
    j["n_tokens"] = ntok;
    if (task.kind == TaskKind::MultipleChoice) {
      j["pred"] = ir.pred;
      j["pred_norm"] = ir.pred_norm;
      j["acc"] = ir.acc;
      j["acc_norm"] = ir.acc_norm;
    } else {
      j["acc"] = ir.acc;
    }
    out += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
}

}  // namespace lmpress::cli
