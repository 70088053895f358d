// A generation's report: the object `generate --json` prints (besides the
// prompt and text) and lmpress_last_report() returns after lmpress_generate.
#pragma once
#include <nlohmann/json.hpp>

#include "runtime/generate.h"
#include "runtime/speculative.h"

namespace lmpress {

// spec: the speculative options g.drafter was made from (nullptr without one).
nlohmann::ordered_json generate_report_json(const GenerateStats& s, const GenerateOptions& g, const SpecOptions* spec);

}  // namespace lmpress
