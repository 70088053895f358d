// Shared by `eval` and `compare`: the task list option, running tasks with
// progress, and their JSON / per-item output.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "eval/tasks.h"

namespace lmpress::cli {

// $LMPRESS_TASK_DIR, else ../shared/data/tasks.
std::string default_task_dir();
// Splits "a,b,c"; fails on an empty list.
std::vector<std::string> split_task_list(const std::string& list);
// The task files a --tasks list names (those that exist), for the path guard.
std::vector<std::string> task_files(const std::string& list, const std::string& task_dir);
// Loads every task (so a bad file fails before any model work).
std::vector<Task> load_tasks(const std::vector<std::string>& names, const std::string& task_dir, int64_t limit);
// Evaluates one task, with a progress line on a TTY.
TaskResult run_task(const Model& m, const Task& task);

nlohmann::ordered_json task_result_json(const TaskResult& r);
// One JSON line per item (--log-samples): context, choices, gold, scores, decisions.
void append_task_samples(std::string& out, const Task& task, const TaskResult& r);

}  // namespace lmpress::cli
