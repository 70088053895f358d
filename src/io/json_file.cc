#include "io/json_file.h"

#include <limits>

#include "core/error.h"
#include "core/mapped_file.h"

namespace lmpress {

nlohmann::json parse_json(const std::string& text, const std::string& source) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for numbers like 1e999
    fail("{}: bad JSON: {}", source, e.what());
  }
}

nlohmann::json read_json_file(const std::string& path) { return parse_json(read_text_file(path), path); }

namespace {

// The member, or nullptr when absent or null (then `def` or an error).
template <typename T>
const nlohmann::json* member(const nlohmann::json& obj, const std::string& key, const std::string& source,
                             const std::string& parent, const std::optional<T>& def) {
  if (!obj.is_object()) fail("{}: {} must be an object", source, parent.empty() ? "the top level" : parent);
  auto it = obj.find(key);
  if (it != obj.end() && !it->is_null()) return &*it;
  if (!def) fail("{}: missing field {}{}{}", source, parent, parent.empty() ? "" : ".", key);
  return nullptr;
}

[[noreturn]] void wrong_type(const std::string& key, const std::string& source, const std::string& parent,
                             const char* want) {
  fail("{}: field {}{}{} must be {}", source, parent, parent.empty() ? "" : ".", key, want);
}

}  // namespace

std::string json_string(const nlohmann::json& obj, const std::string& key, const std::string& source,
                        const std::string& parent, std::optional<std::string> def) {
  const auto* v = member(obj, key, source, parent, def);
  if (!v) return *def;
  if (!v->is_string()) wrong_type(key, source, parent, "a string");
  return v->get<std::string>();
}

int64_t json_int(const nlohmann::json& obj, const std::string& key, const std::string& source,
                 const std::string& parent, std::optional<int64_t> def) {
  const auto* v = member(obj, key, source, parent, def);
  if (!v) return *def;
  if (!v->is_number_integer() ||
      (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())))
    wrong_type(key, source, parent, "an integer (64-bit)");
  return v->get<int64_t>();
}

double json_number(const nlohmann::json& obj, const std::string& key, const std::string& source,
                   const std::string& parent, std::optional<double> def) {
  const auto* v = member(obj, key, source, parent, def);
  if (!v) return *def;
  if (!v->is_number()) wrong_type(key, source, parent, "a number");
  return v->get<double>();
}

bool json_bool(const nlohmann::json& obj, const std::string& key, const std::string& source,
               const std::string& parent, std::optional<bool> def) {
  const auto* v = member(obj, key, source, parent, def);
  if (!v) return *def;
  if (!v->is_boolean()) wrong_type(key, source, parent, "true or false");
  return v->get<bool>();
}

}  // namespace lmpress
