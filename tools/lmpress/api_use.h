// The commands the C API covers (quantize, prune, lowrank, convert,
// perplexity, generate) call it as any program embedding liblmpress would: their options
// fill its params, its report (lmpress_last_report) is what they print.
#pragma once
#include <lmpress.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lmpress::cli {

// A failed call's message becomes the command's error (exit 1).
void api_check(lmpress_status s);
// The report of this thread's last compression or evaluation call.
nlohmann::ordered_json api_report();
// A report's number: JSON writes NaN and Inf as null, read back as NaN.
inline double number(const nlohmann::ordered_json& j) { return j.is_number() ? j.get<double>() : std::nan(""); }
// NULL for an empty option, so the API takes its default.
inline const char* c_str_or_null(const std::string& s) { return s.empty() ? nullptr : s.c_str(); }
// A string list as the C array the params take (valid while `v` lives).
std::vector<const char*> c_strings(const std::vector<std::string>& v);

struct ModelFree {
  void operator()(lmpress_model* m) const { lmpress_model_free(m); }
};
using ApiModel = std::unique_ptr<lmpress_model, ModelFree>;
// lmpress_model_load with the commands' --tokenizer and --lora.
ApiModel api_load_model(const std::string& path, const std::string& tokenizer, const std::vector<std::string>& loras);

// The report's adapter (from --compensate) as text: the comp_err column's
// header and cells ("-" for a tensor without), and its summary line.
std::string compensated_header(const nlohmann::ordered_json& report);
std::string compensated_cell(const nlohmann::ordered_json& report, const nlohmann::ordered_json& tensor);
std::string adapter_line(const nlohmann::ordered_json& report);

}  // namespace lmpress::cli
