// Zero-shot tasks scored by log-likelihood, as lm-evaluation-harness does.
// Multiple choice ({"query","choices","gold"}: ARC, PIQA, HellaSwag, ...): the
// log-likelihood of " " + choice given the query; acc picks the highest sum,
// acc_norm the highest sum per byte of the choice. LAMBADA
// ({"context","continuation"}): acc = the greedy continuation is the target,
// and the perplexity of the target tokens.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"

namespace lmpress {

enum class TaskKind { MultipleChoice, Lambada };

struct TaskItem {
  std::string context;
  std::vector<std::string> choices;  // LAMBADA: the one target
  int64_t gold = 0;
  int64_t line = 0;  // in the task file (0: not from a file), for errors
};

struct Task {
  std::string name, path;
  TaskKind kind = TaskKind::MultipleChoice;
  std::vector<TaskItem> items;
};

// Reads a JSONL task file; the shape of the first line decides the kind.
// limit > 0 keeps the first `limit` items. Fails naming the line on bad JSON,
// missing fields, fewer than 2 choices or a gold index out of range.
Task read_task_file(const std::string& path, const std::string& name, int64_t limit = -1);
// The same for the text of a task file read from `path`.
Task parse_task_text(const std::string& text, const std::string& path, const std::string& name, int64_t limit = -1);
// A task by file path, or by name in task_dir (NAME.jsonl; "lambada" is
// lambada_openai). Fails listing the tasks task_dir has.
Task load_task(const std::string& name_or_path, const std::string& task_dir, int64_t limit = -1);

// One continuation scored: sum of log p over its tokens, whether each token
// was the most likely one, how many tokens.
struct ContinuationScore {
  double loglik = 0;
  bool is_greedy = true;
  int64_t n_tokens = 0;
};

struct ItemResult {
  std::vector<ContinuationScore> scores;  // per choice
  int64_t pred = 0, pred_norm = 0;        // argmax of loglik, of loglik per byte
  bool acc = false, acc_norm = false;
};

struct ValueErr {
  double value = 0, stderr_ = 0;
};

struct TaskResult {
  std::string name;
  TaskKind kind = TaskKind::MultipleChoice;
  int64_t n = 0;
  ValueErr acc, acc_norm, ppl;  // acc_norm: multiple choice; ppl: LAMBADA
  std::vector<ItemResult> items;
  double seconds = 0;
};

// The harness's request: context and continuation with the context's trailing
// whitespace moved to the continuation; tokens = encode(context) (with BOS when
// the model adds one) followed by encode(context + continuation)'s tokens past
// that length. Returns {tokens, number of context tokens}.
std::pair<std::vector<int32_t>, int64_t> task_request_tokens(const Model& m, const std::string& context,
                                                             const std::string& continuation);

// Scores every item; the context is evaluated once and each choice continues
// from its cached state. As lm-evaluation-harness does, a request longer than
// the model's window is cut from the left (the window holds the last ctx_len
// tokens before the final one), and a continuation that alone exceeds the
// window is an error naming the item. `on_item(i)` reports progress.
TaskResult evaluate_task(const Model& m, const Task& task, const std::function<void(int64_t)>& on_item = {});

}  // namespace lmpress
