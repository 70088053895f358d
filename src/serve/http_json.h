// JSON bodies of the OpenAI-style HTTP API, shared by the server and the load
// generator: the error object both sides read and write.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace lmpress::serve {

// {"error": {"message", "type", "code"}} as the OpenAI API answers errors.
inline nlohmann::ordered_json error_body(int status, const std::string& message) {
  const char* type = status == 401 ? "authentication_error"
                     : status == 404 ? "not_found_error"
                     : status == 503 ? "unavailable_error"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
  return {{"error", {{"message", message}, {"type", type}, {"code", status}}}};
}

}  // namespace lmpress::serve
