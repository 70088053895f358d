#include "io/tokenizer_files.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <algorithm>
#include <cctype>
#include <functional>
#include <optional>
#include <unordered_map>

#include "core/error.h"
#include "core/mapped_file.h"
#include "io/json_file.h"
#include "tokenizer/pre_tokenizers.h"

namespace lmpress {

namespace {

// One normalizer step lmpress applies (src/tokenizer/normalizer.h), or an
// error naming the step.
NormalizerStep normalizer_step(const nlohmann::json& x, const std::string& path, const std::string& at) {
  using K = NormalizerStep::Kind;
  const std::string type = json_string(x, "type", path, at, "");
  NormalizerStep st;
  static const std::pair<const char*, K> plain[] = {{"NFC", K::NFC},   {"NFD", K::NFD},
                                                    {"NFKC", K::NFKC}, {"NFKD", K::NFKD},
                                                    {"Lowercase", K::Lowercase}, {"StripAccents", K::StripAccents}};
  for (const auto& [name, kind] : plain)
    if (type == name) {
      st.kind = kind;
      return st;
    }
  if (type == "Strip") {
    st.kind = K::Strip;
    st.left = json_bool(x, "strip_left", path, at, true);
    st.right = json_bool(x, "strip_right", path, at, true);
  } else if (type == "Prepend") {
    st.kind = K::Prepend;
    st.pattern = json_string(x, "prepend", path, at);
  } else if (type == "Replace") {
    st.kind = K::Replace;
    if (!x.contains("pattern") || !x["pattern"].is_object())
      fail("{}: field {}.pattern must be an object", path, at);
    const auto& pat = x["pattern"];
    st.regex = pat.contains("Regex");
    st.pattern = json_string(pat, st.regex ? "Regex" : "String", path, at + ".pattern");
    if (st.pattern.empty()) fail("{}: {}.pattern is empty", path, at);
    st.content = json_string(x, "content", path, at);
  } else {
    fail("{}: {}: normalizer '{}' is not supported (lmpress applies NFC, NFD, NFKC, NFKD, Lowercase, StripAccents, "
         "Strip, Replace and Prepend)",
         path, at, type.empty() ? x.dump().substr(0, 80) : type.substr(0, 80));
  }
  return st;
}

// A normalizer as a flat list of (step, where it is in the file); nested
// Sequences are flattened.
void flatten_normalizer(const nlohmann::json& n, const std::string& path, const std::string& at, int depth,
                        std::vector<std::pair<nlohmann::json, std::string>>& out) {
  if (n.is_null()) return;
  if (depth > 8) fail("{}: {} nests normalizers too deeply", path, at);
  if (json_string(n, "type", path, at, "") != "Sequence") {
    out.push_back({n, at});
    return;
  }
  if (!n.contains("normalizers") || !n["normalizers"].is_array())
    fail("{}: field {}.normalizers must be an array", path, at);
  if (n["normalizers"].size() > 64) fail("{}: {}.normalizers holds more than 64 normalizers", path, at);
  for (size_t i = 0; i < n["normalizers"].size(); i++)
    flatten_normalizer(n["normalizers"][i], path, fmt::format("{}.normalizers[{}]", at, i), depth + 1, out);
}

// The steps as tokenizer.json writes them (also what GGUF's
// tokenizer.lmpress.normalizer holds).
nlohmann::ordered_json normalizer_json(const std::vector<NormalizerStep>& steps) {
  using K = NormalizerStep::Kind;
  auto seq = nlohmann::ordered_json::array();
  for (const auto& st : steps) {
    nlohmann::ordered_json x = {{"type", normalizer_kind_name(st.kind)}};
    if (st.kind == K::Strip) {
      x["strip_left"] = st.left;
      x["strip_right"] = st.right;
    } else if (st.kind == K::Prepend) {
      x["prepend"] = st.pattern;
    } else if (st.kind == K::Replace) {
      x["pattern"] = {{st.regex ? "Regex" : "String", st.pattern}};
      x["content"] = st.content;
    }
    seq.push_back(x);
  }
  return {{"type", "Sequence"}, {"normalizers", seq}};
}

std::vector<NormalizerStep> normalizer_steps(const nlohmann::json& n, const std::string& path, const std::string& at) {
  std::vector<std::pair<nlohmann::json, std::string>> flat;
  flatten_normalizer(n, path, at, 0, flat);
  std::vector<NormalizerStep> steps;
  for (const auto& [x, where] : flat) steps.push_back(normalizer_step(x, path, where));
  return steps;
}

}  // namespace

// ---------------- GGUF ----------------

Vocab vocab_from_gguf(const GGUFFile& g) {
  Vocab v;
  auto model = g.get_string("tokenizer.ggml.model");
  if (!model) fail("{}: has no tokenizer (tokenizer.ggml.model missing)", g.path);
  v.model = *model;
  v.pre = g.get_string("tokenizer.ggml.pre").value_or("default");
  if (auto* r = g.find("tokenizer.lmpress.pre_regexes")) {
    // Written by lmpress for a pre-tokenizer llama.cpp has no name for.
    if (r->type != GGUFType::ARRAY || r->elem_type != GGUFType::STRING)
      fail("{}: tokenizer.lmpress.pre_regexes is not a string array", g.path);
    for (const auto& x : r->as_array()) v.pre_regexes.push_back(x.as_string());
  }
  if (auto* r = g.find("tokenizer.lmpress.normalizer")) {
    // Written by lmpress from tokenizer.json's normalizer; llama.cpp has no such key and applies none.
    if (r->type != GGUFType::STRING) fail("{}: tokenizer.lmpress.normalizer is not a string", g.path);
    v.normalizers = normalizer_steps(parse_json(r->as_string(), g.path + ": tokenizer.lmpress.normalizer"), g.path,
                                     "tokenizer.lmpress.normalizer");
  }
  auto* toks = g.find("tokenizer.ggml.tokens");
  if (!toks || toks->type != GGUFType::ARRAY || toks->elem_type != GGUFType::STRING)
    fail("{}: tokenizer.ggml.tokens is missing or not a string array", g.path);
  for (const auto& t : toks->as_array()) v.tokens.push_back(t.as_string());
  if (auto* s = g.find("tokenizer.ggml.scores")) {
    if (s->type != GGUFType::ARRAY || !(s->elem_type == GGUFType::FLOAT32 || s->elem_type == GGUFType::FLOAT64))
      fail("{}: tokenizer.ggml.scores is not a float array", g.path);
    for (const auto& x : s->as_array()) v.scores.push_back(float(x.as_double()));
  }
  if (auto* s = g.find("tokenizer.ggml.token_type")) {
    if (s->type != GGUFType::ARRAY || (!s->as_array().empty() && !s->as_array()[0].is_int()))
      fail("{}: tokenizer.ggml.token_type is not an integer array", g.path);
    for (const auto& x : s->as_array()) {
      int64_t t = x.as_int();
      if (t < 0 || t > 6) fail("{}: tokenizer.ggml.token_type has unknown type {}", g.path, t);
      v.types.push_back(TokenType(t));
    }
  }
  if (auto* s = g.find("tokenizer.ggml.merges")) {
    if (s->type != GGUFType::ARRAY || s->elem_type != GGUFType::STRING)
      fail("{}: tokenizer.ggml.merges is not a string array", g.path);
    for (const auto& x : s->as_array()) v.merges.push_back(x.as_string());
  }
  // Without merges byte-level BPE cuts every word into single bytes: a silently wrong tokenization.
  if ((v.model == "gpt2" || v.model == "gemma4") && v.merges.empty())
    fail("{}: {} BPE ({}) tokenizer without merges (tokenizer.ggml.merges is missing or empty)", g.path,
         v.model == "gpt2" ? "byte-level" : "Gemma 4", v.model);
  auto id = [&](const char* key, int32_t def) { return int32_t(g.get_int(key).value_or(def)); };
  const bool spm = v.model == "llama";
  v.bos = id("tokenizer.ggml.bos_token_id", spm ? 1 : -1);
  v.eos = id("tokenizer.ggml.eos_token_id", spm ? 2 : -1);
  v.unk = id("tokenizer.ggml.unknown_token_id", spm ? 0 : -1);
  v.pad = id("tokenizer.ggml.padding_token_id", -1);
  // What llama.cpp derives from the pre-tokenizer's name; an unknown name is refused when the tokenizer is made.
  const PreTokenizer* pre = v.model == "gpt2" ? find_pre_tokenizer(v.pre) : nullptr;
  v.add_bos = g.get_bool("tokenizer.ggml.add_bos_token").value_or(spm || (pre && pre->add_bos));
  v.add_eos = g.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  v.add_space_prefix = g.get_bool("tokenizer.ggml.add_space_prefix").value_or(spm);
  v.ignore_merges = pre && pre->ignore_merges;
  if (v.model == "gemma4") {
    // llama.cpp's gemma4 vocabulary: its own pre-tokenizer whatever tokenizer.ggml.pre says, and BOS always added.
    v.pre = "gemma4";
    v.pre_regexes.clear();
    v.add_bos = true;
    v.add_space_prefix = false;
  }
  v.validate(g.path);
  return v;
}

void vocab_to_gguf(const Vocab& v, GGUFWriter& w) {
  w.set("tokenizer.ggml.model", GGUFValue::str(v.model));
  if (v.model == "gpt2") {
    std::string name = v.pre_regexes.empty() ? v.pre : pre_tokenizer_name(v.pre_regexes, v.ignore_merges);
    if (name.empty()) {
      // llama.cpp knows pre-tokenizers by name only: record the regexes for
      // lmpress and name the closest llama.cpp one.
      name = "gpt-2";
      w.set("tokenizer.lmpress.pre_regexes", GGUFValue::str_array(v.pre_regexes));
    }
    w.set("tokenizer.ggml.pre", GGUFValue::str(name));
  }
  w.set("tokenizer.ggml.tokens", GGUFValue::str_array(v.tokens));
  if (!v.scores.empty()) w.set("tokenizer.ggml.scores", GGUFValue::f32_array(v.scores));
  std::vector<int32_t> types;
  for (auto t : v.types) types.push_back(int32_t(t));
  if (!types.empty()) w.set("tokenizer.ggml.token_type", GGUFValue::i32_array(types));
  if (!v.merges.empty()) w.set("tokenizer.ggml.merges", GGUFValue::str_array(v.merges));
  if (v.bos >= 0) w.set("tokenizer.ggml.bos_token_id", GGUFValue::u32(uint32_t(v.bos)));
  if (v.eos >= 0) w.set("tokenizer.ggml.eos_token_id", GGUFValue::u32(uint32_t(v.eos)));
  if (v.unk >= 0) w.set("tokenizer.ggml.unknown_token_id", GGUFValue::u32(uint32_t(v.unk)));
  if (v.pad >= 0) w.set("tokenizer.ggml.padding_token_id", GGUFValue::u32(uint32_t(v.pad)));
  w.set("tokenizer.ggml.add_bos_token", GGUFValue::boolean(v.add_bos));
  w.set("tokenizer.ggml.add_eos_token", GGUFValue::boolean(v.add_eos));
  if (v.model == "llama") w.set("tokenizer.ggml.add_space_prefix", GGUFValue::boolean(v.add_space_prefix));
  if (!v.normalizers.empty()) w.set("tokenizer.lmpress.normalizer", GGUFValue::str(normalizer_json(v.normalizers).dump()));
}

// ---------------- SentencePiece protobuf ----------------

namespace {

class ProtoReader {
 public:
  ProtoReader(const uint8_t* p, size_t n, const std::string& src) : p_(p), end_(p + n), src_(src) {}
  bool done() const { return p_ >= end_; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) fail("{}: truncated protobuf varint", src_);
      uint8_t b = *p_++;
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("{}: protobuf varint too long", src_);
  }
  // Reads a tag; returns field number and wire type.
  std::pair<uint32_t, uint32_t> tag() {
    uint64_t t = varint();
    return {uint32_t(t >> 3), uint32_t(t & 7)};
  }
  std::string_view bytes() {
    uint64_t n = varint();
    if (n > uint64_t(end_ - p_)) fail("{}: truncated protobuf field", src_);
    std::string_view s(reinterpret_cast<const char*>(p_), size_t(n));
    p_ += n;
    return s;
  }
  float fixed32_float() {
    if (end_ - p_ < 4) fail("{}: truncated protobuf float", src_);
    float f;
    std::memcpy(&f, p_, 4);
    p_ += 4;
    return f;
  }
  void skip(uint32_t wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1: if (end_ - p_ < 8) fail("{}: truncated protobuf", src_); p_ += 8; break;
      case 2: bytes(); break;
      case 5: if (end_ - p_ < 4) fail("{}: truncated protobuf", src_); p_ += 4; break;
      default: fail("{}: unsupported protobuf wire type {}", src_, wire);
    }
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  const std::string& src_;
};

class ProtoWriter {
 public:
  std::string out;
  void varint(uint64_t v) {
    while (v >= 0x80) {
      out += char(uint8_t(v) | 0x80);
      v >>= 7;
    }
    out += char(v);
  }
  void tag(uint32_t field, uint32_t wire) { varint((uint64_t(field) << 3) | wire); }
  void bytes(uint32_t field, std::string_view s) {
    tag(field, 2);
    varint(s.size());
    out.append(s);
  }
  void f32(uint32_t field, float f) {
    tag(field, 5);
    out.append(reinterpret_cast<const char*>(&f), 4);
  }
  void uint(uint32_t field, uint64_t v) {
    tag(field, 0);
    varint(v);
  }
};

}  // namespace

Vocab vocab_from_sentencepiece_bytes(const std::string& data, const std::string& src) {
  Vocab v;
  v.model = "llama";
  int model_type = 1;  // UNIGRAM is the protobuf default
  int32_t unk = 0, bos = 1, eos = 2, pad = -1;
  ProtoReader r(reinterpret_cast<const uint8_t*>(data.data()), data.size(), src);
  while (!r.done()) {
    auto [field, wire] = r.tag();
    if ((field == 2 || field == 3) && wire == 2) {
      auto sub = r.bytes();
      ProtoReader s(reinterpret_cast<const uint8_t*>(sub.data()), sub.size(), src);
      while (!s.done()) {
        auto [f, w] = s.tag();
        if (field == 2 && w == 0 && (f == 3 || f == 40 || f == 41 || f == 42 || f == 43)) {
          int64_t x = int64_t(s.varint());
          if (f == 3) model_type = int(x);
          if (f == 40) unk = int32_t(x);
          if (f == 41) bos = int32_t(x);
          if (f == 42) eos = int32_t(x);
          if (f == 43) pad = int32_t(x);
        } else if (field == 3 && w == 0 && f == 3) {
          v.add_space_prefix = s.varint() != 0;
        } else {
          s.skip(w);
        }
      }
      continue;
    }
    r.skip(wire);
  }
  // Second pass for the pieces (field 1), so the loop above stays flat.
  ProtoReader r2(reinterpret_cast<const uint8_t*>(data.data()), data.size(), src);
  while (!r2.done()) {
    auto [field, wire] = r2.tag();
    if (!(field == 1 && wire == 2)) {
      r2.skip(wire);
      continue;
    }
    auto sub = r2.bytes();
    ProtoReader p(reinterpret_cast<const uint8_t*>(sub.data()), sub.size(), src);
    std::string piece;
    float score = 0;
    int type = 1;
    while (!p.done()) {
      auto [f, w] = p.tag();
      if (f == 1 && w == 2)
        piece = std::string(p.bytes());
      else if (f == 2 && w == 5)
        score = p.fixed32_float();
      else if (f == 3 && w == 0)
        type = int(p.varint());
      else
        p.skip(w);
    }
    if (type < 1 || type > 6) fail("{}: piece '{}' has unknown type {}", src, piece, type);
    v.tokens.push_back(std::move(piece));
    v.scores.push_back(score);
    v.types.push_back(TokenType(type));
  }
  if (v.tokens.empty()) fail("{}: not a SentencePiece model (no pieces)", src);
  if (model_type != 2) fail("{}: SentencePiece model type {} is not supported (only BPE)", src, model_type);
  v.unk = unk;
  v.bos = bos;
  v.eos = eos;
  v.pad = pad;
  v.add_bos = true;
  v.validate(src);
  return v;
}

Vocab vocab_from_sentencepiece(const std::string& path) { return vocab_from_sentencepiece_bytes(read_text_file(path), path); }

std::string vocab_to_sentencepiece(const Vocab& v) {
  if (v.model != "llama") fail("only a SentencePiece (llama) vocabulary can be written as tokenizer.model");
  if (!v.normalizers.empty())
    fail("the tokenizer's normalizer steps ({}, ...) cannot be written to tokenizer.model (lmpress writes an identity "
         "normalizer there); write GGUF, which keeps them",
         normalizer_kind_name(v.normalizers[0].kind));
  ProtoWriter w;
  for (size_t i = 0; i < v.tokens.size(); i++) {
    ProtoWriter p;
    p.bytes(1, v.tokens[i]);
    p.f32(2, v.scores.empty() ? 0.0f : v.scores[i]);
    p.uint(3, uint64_t(v.types.empty() ? 1 : int(v.types[i]) == 0 ? 1 : int(v.types[i])));
    w.bytes(1, p.out);
  }
  ProtoWriter t;  // TrainerSpec
  t.uint(3, 2);   // model_type BPE
  t.uint(4, v.tokens.size());
  bool byte_fallback = false;
  for (auto ty : v.types) byte_fallback |= ty == TokenType::Byte;
  t.uint(35, byte_fallback);
  t.uint(40, uint64_t(int64_t(v.unk)));
  t.uint(41, uint64_t(int64_t(v.bos)));
  t.uint(42, uint64_t(int64_t(v.eos)));
  t.uint(43, uint64_t(int64_t(v.pad)));
  w.bytes(2, t.out);
  ProtoWriter n;  // NormalizerSpec: identity, as llama tokenizers use
  n.bytes(1, "identity");
  n.uint(3, v.add_space_prefix);
  n.uint(4, 0);
  n.uint(5, 1);
  w.bytes(3, n.out);
  return w.out;
}

// ---------------- tokenizer.json ----------------

namespace {

// How a SentencePiece-style tokenizer.json (what Hugging Face's LlamaConverter
// writes for Llama 2, Mistral, TinyLlama) marks spaces: "▁" for " " by a
// normalizer (Replace " " -> "▁", Prepend "▁") or a Metaspace pre-tokenizer.
struct SpmStyle {
  bool prefix = false;  // a "▁" before the text
};

const char* const kMetaspace = "\xE2\x96\x81";  // U+2581

// What the file's normalizer and pre-tokenizer do to text before BPE: the
// steps lmpress applies as they are, and, for a SentencePiece-style file, the
// space handling lmpress's SentencePiece tokenizer does itself.
struct TextHandling {
  std::optional<SpmStyle> spm;
  std::vector<NormalizerStep> steps;
};

TextHandling text_handling(const nlohmann::json& j, const std::string& path) {
  TextHandling out;
  SpmStyle st;
  bool spaces = false;  // " " becomes "▁"
  std::vector<std::pair<nlohmann::json, std::string>> norms;
  flatten_normalizer(j.contains("normalizer") ? j["normalizer"] : nlohmann::json(), path, "normalizer", 0, norms);
  std::string first_space_step, after_space_step;  // where they are, for the error below
  std::vector<std::pair<size_t, NormalizerStep>> prepends;  // Prepend "▁" steps and where they go among the others
  for (const auto& [x, at] : norms) {
    const std::string type = json_string(x, "type", path, at, "");
    if (type == "Prepend" && json_string(x, "prepend", path, at, "") == kMetaspace) {
      // A SentencePiece space step if spaces become "▁" too (below), else a step as any other.
      st.prefix = true;
      prepends.push_back({out.steps.size(), normalizer_step(x, path, at)});
      if (first_space_step.empty()) first_space_step = at;
    } else if (type == "Replace" && x.contains("pattern") && x["pattern"].is_object() &&
               x["pattern"].contains("String") && x["pattern"]["String"] == " " &&
               json_string(x, "content", path, at, "") == kMetaspace) {
      spaces = true;
      if (first_space_step.empty()) first_space_step = at;
    } else {
      out.steps.push_back(normalizer_step(x, path, at));
      if (!first_space_step.empty() && after_space_step.empty()) after_space_step = at;
    }
  }
  const nlohmann::json none;
  const nlohmann::json& p = j.contains("pre_tokenizer") ? j["pre_tokenizer"] : none;
  const bool metaspace = !p.is_null() && json_string(p, "type", path, "pre_tokenizer", "") == "Metaspace";
  if (metaspace && json_bool(p, "split", path, "pre_tokenizer", false))
    fail("{}: pre_tokenizer: a Metaspace that splits the text at spaces (split: true) is not supported", path);
  if (metaspace) {
    if (json_string(p, "replacement", path, "pre_tokenizer", kMetaspace) != kMetaspace)
      fail("{}: pre_tokenizer: a Metaspace replacement other than \"\u2581\" is not supported", path);
    const std::string scheme = json_string(p, "prepend_scheme", path, "pre_tokenizer",
                                           json_bool(p, "add_prefix_space", path, "pre_tokenizer", true) ? "always" : "never");
    if (scheme != "always" && scheme != "first" && scheme != "never")
      fail("{}: pre_tokenizer.prepend_scheme '{}' is not always, first or never", path, scheme);
    // lmpress's SentencePiece tokenizer puts the prefix before the text's first piece, as `first` does; `always`
    // differs only after special tokens.
    st.prefix = st.prefix || scheme != "never";
    spaces = true;
  }
  if (!spaces) {
    for (size_t i = prepends.size(); i-- > 0;)
      out.steps.insert(out.steps.begin() + ptrdiff_t(prepends[i].first), prepends[i].second);
    return out;
  }
  // The SentencePiece tokenizer marks spaces after every other step has run.
  if (!after_space_step.empty())
    fail("{}: {}: a normalizer after SentencePiece's space steps ({}) is not supported", path, after_space_step,
         first_space_step);
  if (!p.is_null() && !metaspace)
    fail("{}: pre_tokenizer '{}' with SentencePiece-style spaces is not supported", path,
         json_string(p, "type", path, "pre_tokenizer", "").substr(0, 80));
  out.spm = st;
  return out;
}

// A SentencePiece BPE vocabulary from the merges: lmpress's SentencePiece
// tokenizer merges the best-scored pair first, so a token made by merge i
// scores -i (the earliest merge wins, as Hugging Face's BPE takes the lowest
// rank); tokens no merge makes keep a score below every merge's.
Vocab spm_vocab_from_merges(Vocab v, const SpmStyle& st, const nlohmann::json& m, const std::string& path) {
  std::unordered_map<std::string, int32_t> id;
  for (size_t i = 0; i < v.tokens.size(); i++)
    if (v.types[i] != TokenType::Unused) id.emplace(v.tokens[i], int32_t(i));
  // Ranks as scores stay distinct in a float up to 2^24.
  if (v.merges.size() >= (size_t(1) << 24)) fail("{}: model.merges holds {} merges (at most 2^24)", path, v.merges.size());
  v.scores.assign(v.tokens.size(), -float(v.merges.size()) - 1.0f);
  for (size_t i = 0; i < v.merges.size(); i++) {
    // "left right": the separating space is the one whose removal makes a token (a token may hold spaces;
    // the first 16 are tried).
    const std::string& mg = v.merges[i];
    auto it = id.end();
    size_t sp = mg.find(' ');
    for (int tries = 0; sp != std::string::npos && it == id.end() && tries < 16; tries++, sp = mg.find(' ', sp + 1))
      it = id.find(mg.substr(0, sp) + mg.substr(sp + 1));
    if (it == id.end())
      fail("{}: model.merges[{}] ('{}') does not make a token of the vocabulary", path, i, mg.substr(0, 80));
    v.scores[size_t(it->second)] = std::max(v.scores[size_t(it->second)], -float(i));
  }
  for (size_t i = 0; i < v.tokens.size(); i++) {
    const std::string& t = v.tokens[i];
    if (v.types[i] == TokenType::Normal && t.size() == 6 && t.rfind("<0x", 0) == 0 && t[5] == '>' &&
        std::isxdigit(static_cast<unsigned char>(t[3])) && std::isxdigit(static_cast<unsigned char>(t[4])))
      v.types[i] = TokenType::Byte;
  }
  const std::string unk = m.contains("unk_token") && m["unk_token"].is_string() ? m["unk_token"].get<std::string>() : "";
  if (!unk.empty()) {
    const auto it = id.find(unk);
    if (it == id.end()) fail("{}: model.unk_token '{}' is not in the vocabulary", path, unk);
    v.unk = it->second;
    v.types[size_t(it->second)] = TokenType::Unknown;
  }
  v.model = "llama";
  v.merges.clear();
  v.pre.clear();
  v.pre_regexes.clear();
  v.ignore_merges = false;
  v.add_space_prefix = st.prefix;
  return v;
}

}  // namespace

Vocab vocab_from_tokenizer_json(const std::string& path) {
  return vocab_from_tokenizer_json_text(read_text_file(path), path);
}

Vocab vocab_from_tokenizer_json_text(const std::string& text, const std::string& path) {
  const nlohmann::json j = parse_json(text, path);
  auto bad = [&](const std::string& field, const char* want) { fail("{}: field {} must be {}", path, field, want); };
  if (!j.is_object()) fail("{}: not a JSON object", path);
  if (!j.contains("model") || !j["model"].is_object()) bad("model", "an object");
  const auto& m = j["model"];
  const std::string type = json_string(m, "type", path, "model", "");
  if (type != "BPE") fail("{}: tokenizer model type '{}' is not supported (BPE only)", path, type);
  Vocab v;
  v.model = "gpt2";
  v.ignore_merges = json_bool(m, "ignore_merges", path, "model", false);
  if (!m.contains("vocab") || !m["vocab"].is_object()) bad("model.vocab", "an object");
  const auto& vocab = m["vocab"];
  const nlohmann::json none = nlohmann::json::array();
  const auto& added = j.contains("added_tokens") && !j["added_tokens"].is_null() ? j["added_tokens"] : none;
  if (!added.is_array()) bad("added_tokens", "an array");
  // Ids past the vocabulary are refused before anything is allocated for them.
  const int64_t max_tokens = 1 << 24;
  int64_t n = int64_t(vocab.size());
  for (size_t i = 0; i < added.size(); i++) {
    const std::string at = fmt::format("added_tokens[{}]", i);
    const int64_t id = json_int(added[i], "id", path, at);
    if (id < 0 || id >= max_tokens) fail("{}: {}.id {} is out of range [0, {})", path, at, id, max_tokens);
    n = std::max(n, id + 1);
  }
  if (n > max_tokens) fail("{}: vocabulary of {} tokens is too large", path, n);
  // Unassigned ids become placeholder tokens; a few are normal, but a file
  // must not make a huge vocabulary out of a handful of tokens.
  const int64_t defined = int64_t(vocab.size() + added.size());
  if (n > 2 * defined + 256) fail("{}: token ids reach {} but only {} tokens are defined", path, n - 1, defined);
  v.tokens.assign(size_t(n), "");
  v.types.assign(size_t(n), TokenType::Normal);
  std::vector<bool> seen(size_t(n), false);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it->is_number_integer()) bad(fmt::format("model.vocab[\"{}\"]", it.key()), "an integer");
    const int64_t id = it->is_number_unsigned() ? std::min<uint64_t>(it->get<uint64_t>(), INT64_MAX) : it->get<int64_t>();
    if (id < 0 || id >= n) fail("{}: token '{}' has id {} outside the vocabulary", path, it.key(), id);
    v.tokens[size_t(id)] = it.key();
    seen[size_t(id)] = true;
  }
  for (size_t i = 0; i < added.size(); i++) {
    const std::string at = fmt::format("added_tokens[{}]", i);
    const size_t id = size_t(json_int(added[i], "id", path, at));
    v.tokens[id] = json_string(added[i], "content", path, at);
    v.types[id] = json_bool(added[i], "special", path, at, false) ? TokenType::Control : TokenType::UserDefined;
    seen[id] = true;
  }
  for (size_t i = 0; i < size_t(n); i++)
    if (!seen[i]) {
      v.tokens[i] = "[PAD" + std::to_string(i) + "]";
      v.types[i] = TokenType::Unused;
    }
  if (!m.contains("merges") || !m["merges"].is_array()) bad("model.merges", "an array");
  const auto& merges = m["merges"];
  for (size_t i = 0; i < merges.size(); i++) {
    const auto& mg = merges[i];
    if (mg.is_string())
      v.merges.push_back(mg.get<std::string>());
    else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string())
      v.merges.push_back(mg[0].get<std::string>() + " " + mg[1].get<std::string>());
    else
      bad(fmt::format("model.merges[{}]", i), "a string or a pair of strings");
  }
  if (v.merges.empty()) fail("{}: BPE tokenizer without merges (model.merges is empty)", path);
  TextHandling handling = text_handling(j, path);
  v.normalizers = std::move(handling.steps);
  if (handling.spm) return spm_vocab_from_merges(std::move(v), *handling.spm, m, path);
  // Pre-tokenizer: Split regexes, Digits and ByteLevel(use_regex) in order.
  std::function<void(const nlohmann::json&, const std::string&, int)> walk = [&](const nlohmann::json& p,
                                                                                const std::string& at, int depth) {
    if (p.is_null()) return;
    // Real files nest one Sequence; the limit keeps a hostile file off the stack's end.
    if (depth > 8) fail("{}: {} nests pre-tokenizers too deeply", path, at);
    const std::string type = json_string(p, "type", path, at, "");
    if (type == "Sequence") {
      if (!p.contains("pretokenizers") || !p["pretokenizers"].is_array()) bad(at + ".pretokenizers", "an array");
      for (size_t i = 0; i < p["pretokenizers"].size(); i++)
        walk(p["pretokenizers"][i], fmt::format("{}.pretokenizers[{}]", at, i), depth + 1);
    } else if (type == "Split") {
      if (!p.contains("pattern") || !p["pattern"].is_object()) bad(at + ".pattern", "an object");
      if (!p["pattern"].contains("Regex"))
        fail("{}: {}: Split pre-tokenizer with a plain string pattern is not supported", path, at);
      v.pre_regexes.push_back(json_string(p["pattern"], "Regex", path, at + ".pattern"));
    } else if (type == "ByteLevel") {
      if (json_bool(p, "use_regex", path, at, true)) v.pre_regexes.push_back(kGpt2Regex);
    } else if (type == "Digits") {
      v.pre_regexes.push_back(json_bool(p, "individual_digits", path, at, false) ? R"(\p{N})" : R"(\p{N}+)");
    } else {
      fail("{}: pre-tokenizer '{}' is not supported", path, type);
    }
  };
  walk(j.contains("pre_tokenizer") ? j["pre_tokenizer"] : nlohmann::json(), "pre_tokenizer", 0);
  if (v.pre_regexes.empty()) v.pre_regexes.push_back(kGpt2Regex);
  v.pre = pre_tokenizer_name(v.pre_regexes, v.ignore_merges);
  v.add_space_prefix = false;
  return v;
}

std::string vocab_to_tokenizer_json(const Vocab& v) {
  if (v.model != "gpt2") fail("only a byte-level BPE vocabulary can be written as tokenizer.json");
  nlohmann::ordered_json j;
  j["version"] = "1.0";
  auto added = nlohmann::ordered_json::array();
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (size_t i = 0; i < v.tokens.size(); i++) {
    auto t = v.types.empty() ? TokenType::Normal : v.types[i];
    if (t == TokenType::Control || t == TokenType::UserDefined)
      added.push_back({{"id", i}, {"content", v.tokens[i]}, {"single_word", false}, {"lstrip", false},
                       {"rstrip", false}, {"normalized", false}, {"special", t == TokenType::Control}});
    vocab[v.tokens[i]] = i;
  }
  j["added_tokens"] = added;
  if (v.normalizers.empty()) j["normalizer"] = nullptr;
  else j["normalizer"] = normalizer_json(v.normalizers);
  auto pre = nlohmann::ordered_json::array();
  std::vector<std::string> regexes = v.pre_regexes;
  if (regexes.empty()) {
    const PreTokenizer* p = find_pre_tokenizer(v.pre);
    if (!p) fail("unknown byte-level pre-tokenizer '{}'", v.pre);
    if (p->raw) fail("the '{}' vocabulary (raw UTF-8, not byte-level) cannot be written as tokenizer.json", v.pre);
    regexes = p->hf_regexes.empty() ? p->regexes : p->hf_regexes;  // Hugging Face's spelling where it has one
  }
  for (const auto& r : regexes)
    pre.push_back({{"type", "Split"}, {"pattern", {{"Regex", r}}}, {"behavior", "Isolated"}, {"invert", false}});
  pre.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}});
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", pre}};
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  j["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
                {"ignore_merges", v.ignore_merges}, {"vocab", vocab}, {"merges", v.merges}};
  return j.dump(1);
}

// ---------------- llama2.c ----------------

Vocab vocab_from_llama2c(const std::string& path, int64_t vocab_size) {
  auto f = MappedFile::open(path);
  const uint8_t* p = f->data();
  const uint8_t* end = p + f->size();
  auto need = [&](size_t n) {
    if (size_t(end - p) < n) fail("{}: truncated llama2.c tokenizer", path);
  };
  need(4);
  p += 4;  // max_token_length
  Vocab v;
  v.model = "llama";
  for (int64_t i = 0; i < vocab_size; i++) {
    need(8);
    float score;
    int32_t len;
    std::memcpy(&score, p, 4);
    std::memcpy(&len, p + 4, 4);
    p += 8;
    if (len < 0 || len > 1024) fail("{}: token {} has bad length {}", path, i, len);
    need(size_t(len));
    std::string t(reinterpret_cast<const char*>(p), size_t(len));
    p += len;
    // llama2.c's export wrote SentencePiece's U+2581 as ' ' and BOS/EOS as "\n<s>\n".
    TokenType type = TokenType::Normal;
    if (t == "\n<s>\n" || t == "\n</s>\n") {
      t = t.substr(1, t.size() - 2);
      type = TokenType::Control;
    } else if (t == "<unk>") {
      type = TokenType::Unknown;
    } else if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
      type = TokenType::Byte;
    } else {
      std::string u;
      for (char c : t) u += c == ' ' ? std::string("\xe2\x96\x81") : std::string(1, c);
      t = u;
    }
    v.tokens.push_back(std::move(t));
    v.scores.push_back(score);
    v.types.push_back(type);
  }
  if (p != end) fail("{}: {} trailing bytes after {} tokens (vocabulary size mismatch?)", path, end - p, vocab_size);
  v.unk = 0;
  v.bos = 1;
  v.eos = 2;
  v.add_bos = true;
  v.validate(path);
  return v;
}

void apply_hf_tokenizer_config(Vocab& v, const std::string& dir) {
  auto load = [&](const std::string& p) -> nlohmann::json {
    if (!file_exists(p)) return nlohmann::json::object();
    return read_json_file(p);
  };
  const std::string tc_path = dir + "/tokenizer_config.json", gc_path = dir + "/generation_config.json";
  const auto tc = load(tc_path);
  // bos_token / eos_token: the token's text, or an object holding it as "content".
  auto token_id = [&](const char* key) -> int32_t {
    if (!tc.is_object() || !tc.contains(key) || tc[key].is_null()) return -1;
    const auto& tok = tc[key];
    if (!tok.is_string() && !tok.is_object()) fail("{}: field {} must be a string or an object", tc_path, key);
    const std::string s = tok.is_string() ? tok.get<std::string>() : json_string(tok, "content", tc_path, key);
    for (size_t i = 0; i < v.tokens.size(); i++)
      if (v.tokens[i] == s) return int32_t(i);
    return -1;
  };
  if (int32_t id = token_id("bos_token"); id >= 0) v.bos = id;
  if (int32_t id = token_id("eos_token"); id >= 0) v.eos = id;
  if (tc.contains("add_bos_token") && tc["add_bos_token"].is_boolean()) v.add_bos = tc["add_bos_token"].get<bool>();
  else if (v.model == "gpt2") v.add_bos = false;
  if (tc.contains("add_eos_token") && tc["add_eos_token"].is_boolean()) v.add_eos = tc["add_eos_token"].get<bool>();
  const auto gc = load(gc_path);
  // Some files list several ids here; only a single one is used.
  auto gen_id = [&](const char* key, int32_t& id) {
    if (id >= 0 || !gc.contains(key) || !gc[key].is_number_integer()) return;
    const int64_t x = json_int(gc, key, gc_path);
    if (x < -1 || x > INT32_MAX) fail("{}: {} = {} is out of range", gc_path, key, x);
    id = int32_t(x);
  };
  gen_id("bos_token_id", v.bos);
  gen_id("eos_token_id", v.eos);
  if (v.add_bos && v.bos < 0) v.add_bos = false;
}

}  // namespace lmpress
