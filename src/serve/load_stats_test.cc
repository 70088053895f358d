// Percentiles against numpy's, and the server-sent-events parser fed in
// pieces split anywhere.
#include "serve/load_stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"

namespace lmpress::serve {
namespace {

TEST(LoadStats, PercentileMatchesNumpy) {
  // numpy 1.24.2:
  //   a = [12.5, 3.0, 7.25, 100.0, 42.0, 0.5, 19.0, 8.0, 8.0, 61.75]
  //   [float(np.percentile(a, q)) for q in (0, 25, 33.3, 50, 90, 95, 99, 100)]
  //   -> [0.5, 7.4375, 7.99775, 10.25, 65.57499999999999, 82.78749999999997, 96.5575, 100.0]
  //   np.mean(a) -> 26.2
  const std::vector<double> a{12.5, 3.0, 7.25, 100.0, 42.0, 0.5, 19.0, 8.0, 8.0, 61.75};
  EXPECT_DOUBLE_EQ(percentile(a, 0), 0.5);
  EXPECT_DOUBLE_EQ(percentile(a, 25), 7.4375);
  EXPECT_DOUBLE_EQ(percentile(a, 33.3), 7.99775);
  EXPECT_DOUBLE_EQ(percentile(a, 50), 10.25);
  EXPECT_DOUBLE_EQ(percentile(a, 90), 65.57499999999999);
  EXPECT_DOUBLE_EQ(percentile(a, 95), 82.78749999999997);
  EXPECT_DOUBLE_EQ(percentile(a, 99), 96.5575);
  EXPECT_DOUBLE_EQ(percentile(a, 100), 100.0);
  EXPECT_DOUBLE_EQ(mean(a), 26.2);
  const Summary s = summarize(a);
  EXPECT_DOUBLE_EQ(s.p50, 10.25);
  EXPECT_DOUBLE_EQ(s.p95, 82.78749999999997);
  EXPECT_DOUBLE_EQ(s.p99, 96.5575);
  EXPECT_DOUBLE_EQ(s.mean, 26.2);
  // np.percentile([5.0], 95) -> 5.0; np.percentile([1.0, 2.0], (50, 95, 99)) -> [1.5, 1.95, 1.99]
  EXPECT_DOUBLE_EQ(percentile({5.0}, 95), 5.0);
  EXPECT_DOUBLE_EQ(percentile({1.0, 2.0}, 50), 1.5);
  EXPECT_DOUBLE_EQ(percentile({2.0, 1.0}, 95), 1.95);
  EXPECT_DOUBLE_EQ(percentile({1.0, 2.0}, 99), 1.99);
}

TEST(LoadStats, EmptyAndOutOfRange) {
  EXPECT_TRUE(std::isnan(percentile({}, 50)));
  EXPECT_TRUE(std::isnan(mean({})));
  EXPECT_TRUE(std::isnan(summarize({}).p99));
  EXPECT_THROW(percentile({1.0}, 101), Error);
  EXPECT_THROW(percentile({1.0}, -1), Error);
  EXPECT_THROW(percentile({1.0}, NAN), Error);
}

std::vector<SseEvent> parse_in_pieces(const std::string& s, const std::vector<size_t>& cuts, bool* done = nullptr) {
  SseParser p;
  std::vector<SseEvent> out;
  size_t at = 0;
  for (size_t c : cuts) {
    p.feed(std::string_view(s).substr(at, c - at), out);
    at = c;
  }
  p.feed(std::string_view(s).substr(at), out);
  p.finish(out);
  if (done) *done = p.done();
  return out;
}

TEST(SseParser, EventsSplitAtEveryByte) {
  const std::string stream =
      ": keep-alive comment\r\n"
      "\n"
      "data: {\"choices\":[{\"text\":\"caf\xc3\xa9\"}]}\n\n"
      "event: message\r\n"
      "id: 7\r\n"
      "data:{\"a\":1}\r\n"
      "\r\n"
      "\n\n\n"
      "data: line one\n"
      "data: line two\n"
      "\n"
      "error: {\"message\":\"boom\"}\n\n"
      "data: [DONE]\n\n"
      "data: after done\n\n";
  const std::vector<std::pair<std::string, std::string>> want{
      {"data", "{\"choices\":[{\"text\":\"caf\xc3\xa9\"}]}"},
      {"data", "{\"a\":1}"},
      {"data", "line one\nline two"},
      {"error", "{\"message\":\"boom\"}"},
  };
  // Every single cut, and every pair of cuts.
  for (size_t i = 0; i <= stream.size(); ++i)
    for (size_t j = i; j <= stream.size(); j += (i % 7 == 0 ? 1 : 13)) {
      bool done = false;
      const auto events = parse_in_pieces(stream, {i, j}, &done);
      ASSERT_EQ(events.size(), want.size()) << "cut at " << i << ", " << j;
      for (size_t k = 0; k < want.size(); ++k) {
        EXPECT_EQ(events[k].field, want[k].first) << "cut at " << i << ", " << j;
        EXPECT_EQ(events[k].data, want[k].second) << "cut at " << i << ", " << j;
      }
      EXPECT_TRUE(done);
    }
  // One byte at a time.
  std::vector<size_t> every;
  for (size_t i = 1; i < stream.size(); ++i) every.push_back(i);
  bool done = false;
  EXPECT_EQ(parse_in_pieces(stream, every, &done).size(), want.size());
  EXPECT_TRUE(done);
}

TEST(SseParser, DoneOnlyAsAWholeEvent) {
  bool done = true;
  auto ev = parse_in_pieces("data: {\"x\":1}\n\ndata: [DONE]x\n\n", {}, &done);
  EXPECT_FALSE(done);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[1].data, "[DONE]x");
  // A stream cut before its end: no [DONE].
  ev = parse_in_pieces("data: {\"x\":1}\n\ndata: {\"y\"", {}, &done);
  EXPECT_FALSE(done);
  ASSERT_EQ(ev.size(), 2u);  // the unterminated last event comes out at finish()
  EXPECT_EQ(ev[1].data, "{\"y\"");
  // [DONE] without the blank line after it, at the end of the stream, still ends it.
  ev = parse_in_pieces("data: {\"x\":1}\n\ndata: [DONE]", {}, &done);
  EXPECT_TRUE(done);
  EXPECT_EQ(ev.size(), 1u);
  // Nothing but comments and blank lines.
  ev = parse_in_pieces(":a\n\n:b\r\n\r\n\r\r", {3}, &done);
  EXPECT_FALSE(done);
  EXPECT_TRUE(ev.empty());
}

}  // namespace
}  // namespace lmpress::serve
