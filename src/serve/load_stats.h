// The load generator's arithmetic and parsing, kept apart from its sockets so
// that both are tested on their own: percentiles as numpy computes them, and
// the server-sent-events stream an OpenAI-style server answers with.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace lmpress::serve {

// The q-th percentile (q in [0, 100]) of `values` with linear interpolation
// between the closest ranks, numpy's default (np.percentile(values, q)).
// NaN for no values.
double percentile(std::vector<double> values, double q);
// The arithmetic mean; NaN for no values.
double mean(const std::vector<double>& values);

// p50, p95, p99 and the mean of a set of samples (NaN where there are none).
struct Summary {
  double p50, p95, p99, mean;
};
Summary summarize(const std::vector<double>& values);

// One dispatched server-sent event: the field that carried its data ("data",
// or "error" as llama-server names an error in the middle of a stream) and the
// data, its lines joined with '\n'.
struct SseEvent {
  std::string field;
  std::string data;
};

// Parses a text/event-stream fed in pieces split anywhere (inside a line, a
// "\r\n", a UTF-8 sequence). Lines end at "\n", "\r\n" or "\r"; a line starting
// with ':' is a comment; "field: value" or "field:value" (one space after the
// colon is dropped); a blank line dispatches the event gathered so far. The
// event whose data is "[DONE]" ends the stream: it is not returned, done()
// turns true and whatever follows is ignored. Fields other than data, event,
// id and retry are taken as data too, named by the field ("error").
class SseParser {
 public:
  // Appends the events completed by `bytes` to `out`.
  void feed(std::string_view bytes, std::vector<SseEvent>& out);
  // End of the stream: a last line without its end-of-line and an event
  // without its blank line are taken as complete (lenient, as browsers are not).
  void finish(std::vector<SseEvent>& out);
  bool done() const { return done_; }

 private:
  void line(std::string_view l, std::vector<SseEvent>& out);
  void dispatch(std::vector<SseEvent>& out);

  std::string partial_;  // bytes of a line not yet ended
  bool after_cr_ = false;  // the last byte fed was '\r' (a following '\n' belongs to it)
  SseEvent pending_;
  bool has_data_ = false;
  bool done_ = false;
};

}  // namespace lmpress::serve
