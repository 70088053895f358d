#include "runtime/generate.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "model/forward.h"

namespace lmpress {

std::string take_complete_utf8(std::string& buf) {
  size_t cut = buf.size();
  // Walk back over at most 3 continuation bytes to the last lead byte.
  for (size_t k = 1; k <= 4 && k <= buf.size(); k++) {
    uint8_t c = uint8_t(buf[buf.size() - k]);
    if ((c & 0xc0) == 0x80) continue;
    size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    if (need > k) cut = buf.size() - k;
    break;
  }
  std::string out = buf.substr(0, cut);
  buf.erase(0, cut);
  return out;
}

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::Eos: return "eos";
    case StopReason::Length: return "length";
    case StopReason::Context: return "context";
  }
  return "?";
}

GenerateStats generate(const Model& m, const std::string& prompt, const GenerateOptions& opt,
                       const std::function<void(const std::string&)>& on_text) {
  if (!m.tokenizer) fail("{}: the model has no tokenizer", m.path);
  const int64_t n_ctx = opt.n_ctx > 0 ? opt.n_ctx : m.cfg.ctx_len;
  std::vector<int32_t> toks = m.tokenizer->encode(prompt, true, true);
  if (toks.empty()) fail("the prompt is empty and the model adds no BOS token");
  if (int64_t(toks.size()) >= n_ctx)
    fail("the prompt has {} tokens, which does not fit the context of {} (use a shorter prompt or --ctx)", toks.size(), n_ctx);
  InferenceState st(m, n_ctx, kGenerateBatch);
  std::vector<float> logits(size_t(m.cfg.n_vocab));
  Sampler sampler(opt.sampling);
  GenerateStats s;
  s.n_prompt = int64_t(toks.size());
  auto t0 = std::chrono::steady_clock::now();
  st.eval(toks.data(), int64_t(toks.size()), logits.data(), false);
  auto t1 = std::chrono::steady_clock::now();
  s.prompt_seconds = std::chrono::duration<double>(t1 - t0).count();
  std::string pending;
  const int32_t eos = m.tokenizer->vocab().eos;
  const int64_t n_sample = std::min<int64_t>(m.cfg.n_vocab, int64_t(m.tokenizer->vocab().size()));
  for (int64_t i = 0; i < opt.n_predict; i++) {
    if (st.n_past() >= n_ctx) {
      s.stopped = StopReason::Context;
      break;
    }
    apply_penalties(logits.data(), n_sample, toks.data(), int64_t(toks.size()), opt.sampling);
    int32_t id = sampler.sample(logits.data(), n_sample);
    if (opt.stop_at_eos && id == eos) {
      s.stopped = StopReason::Eos;
      break;
    }
    s.tokens.push_back(id);
    toks.push_back(id);  // the history the penalties look at
    s.n_generated++;
    pending += m.tokenizer->decode_token(id);
    if (on_text) {
      std::string out = take_complete_utf8(pending);
      if (!out.empty()) on_text(out);
    }
    if (i + 1 < opt.n_predict && st.n_past() < n_ctx) st.eval(&id, 1, logits.data(), false);
  }
  if (on_text && !pending.empty()) on_text(pending);
  s.gen_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  return s;
}

}  // namespace lmpress
