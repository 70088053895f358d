// Reading JSON files: every error (syntax, a field of the wrong type) is an
// Error naming the file and, for fields, the field.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace lmpress {

nlohmann::json read_json_file(const std::string& path);
// JSON text read from `source`.
nlohmann::json parse_json(const std::string& text, const std::string& source);

// Member `key` of the object `obj`, whose own name in errors is `parent`
// ("" for the top level, else e.g. "rope_scaling"). Absent or null gives
// `def`, or without one an error "missing field"; another type is an error.
std::string json_string(const nlohmann::json& obj, const std::string& key, const std::string& source,
                        const std::string& parent = "", std::optional<std::string> def = std::nullopt);
int64_t json_int(const nlohmann::json& obj, const std::string& key, const std::string& source,
                 const std::string& parent = "", std::optional<int64_t> def = std::nullopt);
double json_number(const nlohmann::json& obj, const std::string& key, const std::string& source,
                   const std::string& parent = "", std::optional<double> def = std::nullopt);
bool json_bool(const nlohmann::json& obj, const std::string& key, const std::string& source,
               const std::string& parent = "", std::optional<bool> def = std::nullopt);

}  // namespace lmpress
