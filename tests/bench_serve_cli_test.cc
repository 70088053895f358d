// bench-serve refuses what it must not do before it sends anything: a server
// that is not on the loopback interface, and options out of their bounds.
#include <gtest/gtest.h>

#include "test_util.h"

namespace lmpress {
namespace {

const std::string kLoad = " --concurrency 1 --requests 1 --prompt-len 4 --max-tokens 4";

TEST(BenchServeCli, RefusesNonLoopbackUrls) {
  for (const char* url : {"http://10.0.0.1:8080", "http://example.com", "https://127.0.0.1:8080",
                          "http://127.0.0.1@example.com:80/", "http://[::2]:80", "localhost:8080"})
    test::expect_cli_error(std::string("bench-serve ") + url + kLoad,
                           std::string("error: bench-serve: URL '") + url +
                               "' is not loopback (only 127.0.0.1, localhost, [::1] are allowed)");
}

TEST(BenchServeCli, RefusesBadOptions) {
  const std::string url = "bench-serve http://127.0.0.1:9 ";
  test::expect_cli_error(url + "--concurrency 0 --requests 1 --prompt-len 4 --max-tokens 4", "--concurrency");
  test::expect_cli_error(url + "--concurrency 1025 --requests 1 --prompt-len 4 --max-tokens 4", "--concurrency");
  test::expect_cli_error(url + "--concurrency 1 --requests 100001 --prompt-len 4 --max-tokens 4", "--requests");
  test::expect_cli_error(url + "--concurrency 1 --requests x --prompt-len 4 --max-tokens 4", "--requests");
  test::expect_cli_error(url + "--concurrency 1 --requests 1 --prompt-len 0 --max-tokens 4", "--prompt-len");
  test::expect_cli_error(url + "--concurrency 1 --requests 1 --prompt-len 4 --max-tokens 0", "--max-tokens");
  test::expect_cli_error(url + "--concurrency 1 --requests 1 --prompt-len 4", "--max-tokens");
  test::expect_cli_error(url + kLoad + " --timeout 0", "--timeout");
  test::expect_cli_error(url + kLoad + " --shared-prefix 5", "--shared-prefix");
  test::expect_cli_error(url + kLoad + " --shared-prefix -1", "--shared-prefix");
  test::expect_cli_error("bench-serve" + kLoad, "url");
}

}  // namespace
}  // namespace lmpress
