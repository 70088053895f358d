// The compression commands' reports as JSON: the object `quantize --json` /
// `prune --json` print and lmpress_last_report() returns, built once here so
// the command line and the C API cannot drift apart.
#pragma once
#include <nlohmann/json.hpp>

#include "compress/calibration.h"
#include "compress/compensate.h"
#include "compress/expert_prune.h"
#include "compress/prune_model.h"
#include "compress/quantize_model.h"
#include "compress/structured_prune.h"

namespace lmpress {

nlohmann::ordered_json quantize_report_json(const QuantizeReport& r);
nlohmann::ordered_json prune_report_json(const PruneReport& r, const PruneOptions& o);
nlohmann::ordered_json structured_report_json(const StructuredReport& r);
nlohmann::ordered_json expert_prune_report_json(const ExpertPruneReport& r);

// Back from a report's fields, for printing it as text.
MemoryReport memory_from_json(const nlohmann::ordered_json& j);

// Bits per weight of the model's bytes with the adapter's added.
double bpw_with_adapter(const AdapterReport& a, uint64_t bytes_out, int64_t n_params);

}  // namespace lmpress
