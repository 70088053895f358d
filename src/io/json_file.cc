#include "io/json_file.h"

#include "core/error.h"
#include "core/mapped_file.h"

namespace lmpress {

nlohmann::json read_json_file(const std::string& path) {
  try {
    return nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: bad JSON: {}", path, e.what());
  }
}

}  // namespace lmpress
