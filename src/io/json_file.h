// Reads a JSON file; a parse error names the file.
#pragma once
#include <nlohmann/json.hpp>

#include <string>

namespace lmpress {

nlohmann::json read_json_file(const std::string& path);

}  // namespace lmpress
