// Jinja2 subset interpreter. The lexer, parser and scoping rules follow
// Jinja2 3.1's (jinja2/lexer.py, parser.py, the compiler's frames); values
// follow Python's semantics because templates are written against them: str()
// of a list is its repr, 7 // 2 is 3, '' is false, a missing key is Undefined.
#include "runtime/jinja.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <cwctype>
#include <functional>
#include <locale.h>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "runtime/unicode_tables.h"

namespace lmpress::jinja {

namespace {

std::string error_message(TemplateError::Kind kind, const std::string& detail, int line) {
  std::string where = line > 0 ? fmt::format(" (line {})", line) : "";
  switch (kind) {
    case TemplateError::Kind::Unsupported: return "chat template: " + detail + " not supported" + where;
    case TemplateError::Kind::Syntax: return "chat template: syntax error: " + detail + where;
    default: return "chat template: " + detail + where;
  }
}

using EKind = TemplateError::Kind;

[[noreturn]] void throw_error(EKind kind, const std::string& detail, int line = 0) {
  throw TemplateError(kind, detail, line);
}
[[noreturn]] void unsupported(const std::string& what, int line = 0) { throw_error(EKind::Unsupported, what, line); }
[[noreturn]] void render_error(const std::string& what, int line = 0) { throw_error(EKind::Render, what, line); }
[[noreturn]] void syntax_error(const std::string& what, int line) { throw_error(EKind::Syntax, what, line); }

// ---------------------------------------------------------------------------
// Text as Python sees it: code points. Bytes that are not valid UTF-8 map to
// U+DC80..U+DCFF and back (Python's surrogateescape), so nothing is lost.

std::u32string decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
    bool ok = n > 0 && i + size_t(n) <= s.size();
    for (int k = 1; ok && k < n; k++) {
      const unsigned char d = static_cast<unsigned char>(s[i + size_t(k)]);
      if ((d & 0xc0) != 0x80) ok = false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (ok && ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
               (cp >= 0xd800 && cp <= 0xdfff)))
      ok = false;
    if (!ok) {
      out.push_back(0xdc00 + c);
      i++;
    } else {
      out.push_back(cp);
      i += size_t(n);
    }
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp >= 0xdc80 && cp <= 0xdcff) {
    out.push_back(static_cast<char>(cp - 0xdc00));
  } else if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

std::string encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

// str.isspace(): what str.strip() and str.split() remove.
bool py_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

// str.splitlines() boundaries.
bool py_line_break(char32_t c) {
  return c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || (c >= 0x1c && c <= 0x1e) || c == 0x85 || c == 0x2028 ||
         c == 0x2029;
}

// Case and printability as Python's str has them (tables generated from
// Python's own str methods: unicode_tables.h). isalpha / isdigit go through
// the C library's UTF-8 tables.
template <size_t N>
bool in_ranges(const unicode::CodeRange (&r)[N], char32_t c) {
  size_t lo = 0, hi = N;
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (r[mid].last < c) {
      lo = mid + 1;
    } else if (r[mid].first > c) {
      hi = mid;
    } else {
      return true;
    }
  }
  return false;
}

// str.upper() / lower() / title() of the one code point c, appended to out.
template <size_t R, size_t S>
void append_mapped(std::string& out, char32_t c, const unicode::CaseRun (&runs)[R],
                   const unicode::SpecialCase (&special)[S]) {
  size_t lo = 0, hi = S;
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (special[mid].cp < c) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo < S && special[lo].cp == c) {
    out += special[lo].utf8;
    return;
  }
  lo = 0;
  hi = R;
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (runs[mid].last < c) {
      lo = mid + 1;
    } else if (runs[mid].first > c) {
      hi = mid;
    } else {
      if ((c - runs[mid].first) % uint32_t(runs[mid].stride) == 0) c = char32_t(int64_t(c) + runs[mid].delta);
      break;
    }
  }
  append_utf8(out, c);
}

void append_upper(std::string& out, char32_t c) { append_mapped(out, c, unicode::kUpperRuns, unicode::kUpperSpecial); }
void append_title(std::string& out, char32_t c) { append_mapped(out, c, unicode::kTitleRuns, unicode::kTitleSpecial); }
bool is_cased(char32_t c) { return in_ranges(unicode::kCased, c); }
bool is_upper(char32_t c) { return in_ranges(unicode::kUppercase, c); }
bool is_lower(char32_t c) { return in_ranges(unicode::kLowercase, c); }
bool is_title(char32_t c) { return in_ranges(unicode::kTitlecase, c); }

// str.lower() of u[i]: a capital sigma ends a word (ς) when a cased letter
// precedes it and none follows, case-ignorable characters skipped (CPython's
// handle_capital_sigma).
void append_lower(std::string& out, const std::u32string& u, size_t i) {
  const char32_t c = u[i];
  if (c == 0x3a3) {
    size_t j = i;
    while (j > 0 && in_ranges(unicode::kCaseIgnorable, u[j - 1])) j--;
    bool final_sigma = j > 0 && is_cased(u[j - 1]);
    if (final_sigma) {
      size_t k = i + 1;
      while (k < u.size() && in_ranges(unicode::kCaseIgnorable, u[k])) k++;
      final_sigma = k == u.size() || !is_cased(u[k]);
    }
    append_utf8(out, final_sigma ? 0x3c2 : 0x3c3);
    return;
  }
  append_mapped(out, c, unicode::kLowerRuns, unicode::kLowerSpecial);
}

bool is_alpha(char32_t c) {
  if (c < 0x80) return (c | 32) >= 'a' && (c | 32) <= 'z';
  static const locale_t l = newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t(0));
  return l && iswalpha_l(wint_t(c), l);
}
bool is_digit(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  static const locale_t l = newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t(0));
  return l && iswdigit_l(wint_t(c), l);
}

std::string str_upper(std::string_view s) {
  std::string out;
  for (char32_t c : decode(s)) append_upper(out, c);
  return out;
}
std::string str_lower(std::string_view s) {
  const std::u32string u = decode(s);
  std::string out;
  for (size_t i = 0; i < u.size(); i++) append_lower(out, u, i);
  return out;
}
// str.title(): a character after a cased one is lowered, any other titlecased.
std::string str_title(std::string_view s) {
  const std::u32string u = decode(s);
  std::string out;
  bool prev_cased = false;
  for (size_t i = 0; i < u.size(); i++) {
    if (prev_cased) {
      append_lower(out, u, i);
    } else {
      append_title(out, u[i]);
    }
    prev_cased = is_cased(u[i]);
  }
  return out;
}
// str.capitalize(): the first character titlecased, the rest lowered.
std::string str_capitalize(std::string_view s) {
  const std::u32string u = decode(s);
  std::string out;
  for (size_t i = 0; i < u.size(); i++) {
    if (i == 0) {
      append_title(out, u[i]);
    } else {
      append_lower(out, u, i);
    }
  }
  return out;
}
std::string str_swapcase(std::string_view s) {
  const std::u32string u = decode(s);
  std::string out;
  for (size_t i = 0; i < u.size(); i++) {
    if (is_upper(u[i])) {
      append_lower(out, u, i);
    } else if (is_lower(u[i])) {
      append_upper(out, u[i]);
    } else {
      append_utf8(out, u[i]);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Values.

enum class K : uint8_t { Undef, None, Bool, Int, Float, Str, List, Dict, Ns, Loop, Func };

// Immutable shared text: copying a value (into a variable, a list, a loop)
// never copies its characters, so work stays proportional to steps.
class Text {
 public:
  Text() = default;
  Text(std::string s) : p_(s.empty() ? nullptr : std::make_shared<const std::string>(std::move(s))) {}
  Text(const char* s) : Text(std::string(s)) {}
  const std::string& str() const {
    static const std::string empty;
    return p_ ? *p_ : empty;
  }
  operator const std::string&() const { return str(); }
  operator std::string_view() const { return str(); }
  size_t size() const { return str().size(); }
  size_t find(const std::string& x, size_t pos = 0) const { return str().find(x, pos); }
  size_t find(char c, size_t pos = 0) const { return str().find(c, pos); }
  bool empty() const { return str().empty(); }
  friend bool operator==(const Text& a, const Text& b) { return a.p_ == b.p_ || a.str() == b.str(); }
  friend bool operator<(const Text& a, const Text& b) { return a.str() < b.str(); }

 private:
  std::shared_ptr<const std::string> p_;
};

struct Value;
struct Dict;
struct Func;
using List = std::vector<Value>;

struct Value {
  K k = K::Undef;
  bool markup = false;  // Str: a Markup string (|safe): `+` escapes the plain operand
  bool tuple = false;   // List: a tuple (repr with parentheses; not equal to a list)
  // List: what Python has there instead of a list. A generator (what map,
  // select, items return) is always true and has no len(); dict views print as
  // dict_keys([...]) and cannot be indexed; a range prints as range(a, b).
  enum class View : uint8_t { None, Gen, Keys, Values, Items, Range } view = View::None;
  int64_t stop = 0, step = 0;  // Range: start is i
  int64_t i = 0;        // Bool, Int
  double f = 0;         // Float
  Text s;               // Str; Undef: Jinja2's message for using it
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;  // Dict; Ns and Loop attributes (shared: a namespace is changed in place)
  std::shared_ptr<Func> fn;

  static Value undefined(std::string hint) {
    Value v;
    v.s = std::move(hint);
    return v;
  }
  static Value none() {
    Value v;
    v.k = K::None;
    return v;
  }
  static Value boolean(bool b) {
    Value v;
    v.k = K::Bool;
    v.i = b;
    return v;
  }
  static Value integer(int64_t i) {
    Value v;
    v.k = K::Int;
    v.i = i;
    return v;
  }
  static Value number(double f) {
    Value v;
    v.k = K::Float;
    v.f = f;
    return v;
  }
  static Value str(std::string s, bool markup = false) {
    Value v;
    v.k = K::Str;
    v.s = std::move(s);
    v.markup = markup;
    return v;
  }
  static Value make_list(List items, bool tuple = false);
  static Value make_dict(std::shared_ptr<Dict> d) {
    Value v;
    v.k = K::Dict;
    v.dict = std::move(d);
    return v;
  }

  bool is_undef() const { return k == K::Undef; }
  bool is_num() const { return k == K::Bool || k == K::Int || k == K::Float; }
  bool is_plain_list() const { return k == K::List && view == View::None; }
  bool is_int() const { return k == K::Bool || k == K::Int; }
  double as_double() const { return k == K::Float ? f : double(i); }
};

std::string hash_key(const Value& v, int depth);

// Python's dict: insertion-ordered, any hashable key (equal numbers are one key).
struct Dict {
  std::vector<std::pair<Value, Value>> items;
  std::unordered_map<std::string, size_t> index;  // hash_key(key) -> position

  const Value* find_key(const std::string& hk) const {
    auto it = index.find(hk);
    return it == index.end() ? nullptr : &items[it->second].second;
  }
  const Value* find(const std::string& key) const { return find_key("s" + key); }
  const Value* find(const Value& key) const { return find_key(hash_key(key, 0)); }
  void set(const Value& key, Value v) {
    const std::string hk = hash_key(key, 0);
    auto it = index.find(hk);
    if (it != index.end()) {
      items[it->second].second = std::move(v);
    } else {
      index.emplace(hk, items.size());
      items.emplace_back(key, std::move(v));
    }
  }
  void set(const std::string& key, Value v) { set(Value::str(key), std::move(v)); }
  Dict() = default;
  Dict(const Dict&) = default;
  ~Dict();
};

// Freeing a deeply nested value (a chain of lists or namespaces a template
// built in a loop) must not recurse once per level: containers being freed
// while another is hand their children to the outermost one, which frees
// them in a loop.
struct Graveyard {
  static std::vector<Value>*& pending() {
    thread_local std::vector<Value>* p = nullptr;
    return p;
  }
  template <class Take>
  static void bury(Take take) {
    if (pending()) {
      take(*pending());
      return;
    }
    std::vector<Value> queue;
    pending() = &queue;
    take(queue);
    while (!queue.empty()) {
      Value v = std::move(queue.back());
      queue.pop_back();
    }
    pending() = nullptr;
  }
};

struct ListDeleter {
  void operator()(List* l) const {
    Graveyard::bury([l](std::vector<Value>& q) {
      for (auto& v : *l) q.push_back(std::move(v));
    });
    delete l;
  }
};

Value Value::make_list(List items, bool tuple) {
  Value v;
  v.k = K::List;
  v.list = std::shared_ptr<List>(new List(std::move(items)), ListDeleter{});
  v.tuple = tuple;
  return v;
}

inline Dict::~Dict() {
  Graveyard::bury([this](std::vector<Value>& q) {
    for (auto& kv : items) {
      q.push_back(std::move(kv.first));
      q.push_back(std::move(kv.second));
    }
  });
}

struct Interp;
struct Stmt;
struct Scope;

struct Args {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};

struct Func {
  std::string name;
  std::function<Value(Interp&, Args&)> native;
  const Stmt* macro = nullptr;
  std::weak_ptr<Scope> closure;  // weak: the scope holding a macro must not keep itself alive
};

Value make_func(std::string name, std::function<Value(Interp&, Args&)> f) {
  Value v;
  v.k = K::Func;
  v.fn = std::make_shared<Func>();
  v.fn->name = std::move(name);
  v.fn->native = std::move(f);
  return v;
}

const char* type_name(const Value& v) {
  switch (v.k) {
    case K::Undef: return "Undefined";
    case K::None: return "NoneType";
    case K::Bool: return "bool";
    case K::Int: return "int";
    case K::Float: return "float";
    case K::Str: return "str";
    case K::List:
      switch (v.view) {
        case Value::View::Gen: return "generator";
        case Value::View::Keys: return "dict_keys";
        case Value::View::Values: return "dict_values";
        case Value::View::Items: return "dict_items";
        case Value::View::Range: return "range";
        default: return v.tuple ? "tuple" : "list";
      }
    case K::Dict: return "dict";
    case K::Ns: return "Namespace";
    case K::Loop: return "LoopContext";
    case K::Func: return v.fn->macro ? "Macro" : "builtin_function_or_method";
  }
  return "object";
}

// Using an Undefined for anything but printing, testing and iterating is
// Jinja2's UndefinedError.
[[noreturn]] void undefined_error(const Value& v) { render_error(v.s.empty() ? "value is undefined" : v.s); }

bool truthy(const Value& v) {
  switch (v.k) {
    case K::Undef:
    case K::None: return false;
    case K::Bool:
    case K::Int: return v.i != 0;
    case K::Float: return v.f != 0;
    case K::Str: return !v.s.empty();
    case K::List: return v.view == Value::View::Gen || !v.list->empty();
    case K::Dict: return !v.dict->items.empty();
    default: return true;
  }
}

// Python's float repr: the shortest digits that round-trip, fixed notation
// for exponents -4..15, else d.ddde+XX.
std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string s(buf, r.ptr);
  std::string sign;
  if (s[0] == '-') {
    sign = "-";
    s.erase(0, 1);
  }
  const size_t e = s.find('e');
  const int exp = std::stoi(s.substr(e + 1));
  std::string digits = s.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  if (exp < -4 || exp >= 16) {
    std::string m = digits.substr(0, 1);
    if (digits.size() > 1) m += "." + digits.substr(1);
    return sign + m + fmt::format("e{}{:02d}", exp < 0 ? '-' : '+', std::abs(exp));
  }
  if (exp >= 0) {
    const size_t int_len = size_t(exp) + 1;
    if (digits.size() <= int_len) return sign + digits + std::string(int_len - digits.size(), '0') + ".0";
    return sign + digits.substr(0, int_len) + "." + digits.substr(int_len);
  }
  return sign + "0." + std::string(size_t(-exp - 1), '0') + digits;
}

// Whether Python's str.isprintable() holds: repr() escapes the others.
bool py_printable(char32_t c) { return !in_ranges(unicode::kNotPrintable, c); }

std::string str_repr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : decode(s)) {
    if (c == char32_t(quote) || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (py_printable(c)) {
      append_utf8(out, c);
    } else if (c < 0x100) {
      out += fmt::format("\\x{:02x}", uint32_t(c));
    } else if (c < 0x10000) {
      out += fmt::format("\\u{:04x}", uint32_t(c));
    } else {
      out += fmt::format("\\U{:08x}", uint32_t(c));
    }
  }
  out += quote;
  return out;
}

std::string py_repr(const Value& v, int depth = 0);

// Printing, comparing and hashing recurse into containers: a value nested
// deeper than this (or a namespace holding itself) is an error, as Python's
// recursion limit makes it there.
constexpr int kMaxNesting = 512;
void check_nesting(int depth) {
  if (depth > kMaxNesting) throw_error(EKind::Limit, fmt::format("values nest deeper than {} levels", kMaxNesting));
}

// str(v) as Python prints it; Undefined prints as "".
std::string py_str(const Value& v, int depth = 0) {
  check_nesting(depth);
  switch (v.k) {
    case K::Undef: return "";
    case K::None: return "None";
    case K::Bool: return v.i ? "True" : "False";
    case K::Int: return std::to_string(v.i);
    case K::Float: return float_repr(v.f);
    case K::Str: return v.s;
    case K::List: {
      // Python prints a generator with its address: no template can rely on that text.
      if (v.view == Value::View::Gen) unsupported("printing a generator (add | list)");
      if (v.view == Value::View::Range)
        return v.step == 1 ? fmt::format("range({}, {})", v.i, v.stop) : fmt::format("range({}, {}, {})", v.i, v.stop, v.step);
      std::string out = v.view != Value::View::None ? std::string(type_name(v)) + "([" : v.tuple ? "(" : "[";
      for (size_t j = 0; j < v.list->size(); j++) {
        if (j) out += ", ";
        out += py_repr((*v.list)[j], depth + 1);
      }
      if (v.tuple && v.list->size() == 1) out += ",";
      out += v.view != Value::View::None ? "])" : v.tuple ? ")" : "]";
      return out;
    }
    case K::Dict:
    case K::Ns: {
      std::string out = v.k == K::Ns ? "<Namespace {" : "{";
      bool first = true;
      for (const auto& [key, val] : v.dict->items) {
        if (!first) out += ", ";
        first = false;
        out += py_repr(key, depth + 1) + ": " + py_repr(val, depth + 1);
      }
      return out + (v.k == K::Ns ? "}>" : "}");
    }
    case K::Loop: {
      const Value* idx = v.dict->find("index");
      const Value* len = v.dict->find("length");
      return fmt::format("<LoopContext {}/{}>", idx ? py_str(*idx) : "?", len ? py_str(*len) : "?");
    }
    case K::Func: return v.fn->macro ? "<Macro '" + v.fn->name + "'>" : "<built-in function " + v.fn->name + ">";
  }
  return "";
}

std::string py_repr(const Value& v, int depth) {
  if (v.k == K::Str) return v.markup ? "Markup(" + str_repr(v.s) + ")" : str_repr(v.s);
  if (v.k == K::Undef) return "Undefined";
  return py_str(v, depth);
}

bool py_eq(const Value& a, const Value& b, int depth = 0) {
  check_nesting(depth);
  if (a.is_num() && b.is_num()) {
    if (a.is_int() && b.is_int()) return a.i == b.i;
    return a.as_double() == b.as_double();
  }
  if (a.k != b.k) return false;
  switch (a.k) {
    case K::Undef:
    case K::None: return true;
    case K::Str: return a.s == b.s;
    case K::List: {
      if (a.view != b.view) return false;
      if (a.view == Value::View::Gen || a.view == Value::View::Values) return a.list == b.list;  // identity
      if (a.view == Value::View::Keys || a.view == Value::View::Items) {  // set equality
        if (a.list->size() != b.list->size()) return false;
        for (const auto& x : *a.list) {
          bool found = false;
          for (const auto& y : *b.list)
            if (py_eq(x, y, depth + 1)) {
              found = true;
              break;
            }
          if (!found) return false;
        }
        return true;
      }
      if (a.tuple != b.tuple || a.list->size() != b.list->size()) return false;
      for (size_t j = 0; j < a.list->size(); j++)
        if (!py_eq((*a.list)[j], (*b.list)[j], depth + 1)) return false;
      return true;
    }
    case K::Dict: {
      if (a.dict->items.size() != b.dict->items.size()) return false;
      for (const auto& [key, val] : a.dict->items) {
        const Value* o = b.dict->find(key);
        if (!o || !py_eq(val, *o, depth + 1)) return false;
      }
      return true;
    }
    case K::Ns:
    case K::Loop: return a.dict == b.dict;
    case K::Func: return a.fn == b.fn;
    default: return false;
  }
}

// a < b, Python's ordering; mixed types are a TypeError.
bool py_lt(const Value& a, const Value& b, const char* op = "<", int depth = 0) {
  check_nesting(depth);
  if (a.is_undef()) undefined_error(a);
  if (b.is_undef()) undefined_error(b);
  if (a.is_num() && b.is_num()) {
    if (a.is_int() && b.is_int()) return a.i < b.i;
    return a.as_double() < b.as_double();
  }
  if (a.k == K::Str && b.k == K::Str) return a.s < b.s;  // UTF-8 byte order is code point order
  if (a.is_plain_list() && b.is_plain_list() && a.tuple == b.tuple) {
    const size_t n = std::min(a.list->size(), b.list->size());
    for (size_t j = 0; j < n; j++) {
      const Value &x = (*a.list)[j], &y = (*b.list)[j];
      if (!py_eq(x, y)) return py_lt(x, y, op, depth + 1);
    }
    return a.list->size() < b.list->size();
  }
  render_error(fmt::format("'{}' not supported between instances of '{}' and '{}'", op, type_name(a), type_name(b)));
}

// Identity for set-like uses (unique, dict keys): equal numbers hash alike, as in Python.
std::string hash_key(const Value& v, int depth = 0) {
  check_nesting(depth);
  switch (v.k) {
    case K::None: return "N";
    case K::Bool:
    case K::Int: return "n" + std::to_string(v.i);
    case K::Float:
      if (std::isfinite(v.f) && v.f == std::floor(v.f) && std::fabs(v.f) < 9e18) return "n" + std::to_string(int64_t(v.f));
      return "f" + float_repr(v.f);
    case K::Str: return "s" + v.s.str();
    case K::Undef: return "U";
    case K::List:
      if (v.view == Value::View::Range) return "r" + py_str(v);
      if (v.tuple && v.view == Value::View::None) {
        std::string out = "t(";
        for (const auto& x : *v.list) out += hash_key(x, depth + 1) + ",";
        return out + ")";
      }
      break;
    default: break;
  }
  render_error(fmt::format("unhashable type: '{}'", type_name(v)));
}

// ---------------------------------------------------------------------------
// json.dumps, as transformers' tojson filter calls it.

struct JsonStyle {
  bool ensure_ascii = false;
  bool indent = false;
  std::string indent_str;
  std::string item_sep = ", ", key_sep = ": ";
  bool sort_keys = false;
};

void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  for (char32_t c : decode(s)) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", uint32_t(c));
        } else if (ensure_ascii && c > 0x7e) {
          if (c >= 0x10000) {
            const uint32_t v = uint32_t(c) - 0x10000;
            out += fmt::format("\\u{:04x}\\u{:04x}", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
          } else {
            out += fmt::format("\\u{:04x}", uint32_t(c));
          }
        } else if (c >= 0xdc80 && c <= 0xdcff) {
          out.push_back(char(c - 0xdc00));
        } else {
          append_utf8(out, c);
        }
    }
  }
  out += '"';
}

// json.dumps turns keys that are not strings into strings.
std::string json_key(const Value& k) {
  switch (k.k) {
    case K::Str: return k.s;
    case K::None: return "null";
    case K::Bool: return k.i ? "true" : "false";
    case K::Int: return std::to_string(k.i);
    case K::Float:
      if (std::isnan(k.f)) return "NaN";
      if (std::isinf(k.f)) return k.f > 0 ? "Infinity" : "-Infinity";
      return float_repr(k.f);
    default: render_error(fmt::format("keys must be str, int, float, bool or None, not {}", type_name(k)));
  }
}

void to_json(std::string& out, const Value& v, const JsonStyle& st, int level, int depth) {
  check_nesting(depth);
  auto newline = [&](int lvl) {
    out += '\n';
    for (int j = 0; j < lvl; j++) out += st.indent_str;
  };
  switch (v.k) {
    case K::None: out += "null"; return;
    case K::Bool: out += v.i ? "true" : "false"; return;
    case K::Int: out += std::to_string(v.i); return;
    case K::Float:
      if (std::isnan(v.f)) {
        out += "NaN";
      } else if (std::isinf(v.f)) {
        out += v.f > 0 ? "Infinity" : "-Infinity";
      } else {
        out += float_repr(v.f);
      }
      return;
    case K::Str: json_string(out, v.s, st.ensure_ascii); return;
    case K::List: {
      if (v.view != Value::View::None) render_error(fmt::format("Object of type {} is not JSON serializable", type_name(v)));
      if (v.list->empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t j = 0; j < v.list->size(); j++) {
        if (j) out += st.item_sep;
        if (st.indent) newline(level + 1);
        to_json(out, (*v.list)[j], st, level + 1, depth + 1);
      }
      if (st.indent) newline(level);
      out += ']';
      return;
    }
    case K::Dict: {
      if (v.dict->items.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<Value, Value>*> items;
      for (const auto& kv : v.dict->items) items.push_back(&kv);
      if (st.sort_keys)
        std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return py_lt(a->first, b->first); });
      out += '{';
      for (size_t j = 0; j < items.size(); j++) {
        if (j) out += st.item_sep;
        if (st.indent) newline(level + 1);
        json_string(out, json_key(items[j]->first), st.ensure_ascii);
        out += st.key_sep;
        to_json(out, items[j]->second, st, level + 1, depth + 1);
      }
      if (st.indent) newline(level);
      out += '}';
      return;
    }
    default: render_error(fmt::format("Object of type {} is not JSON serializable", type_name(v)));
  }
}

Value from_json(const Json& j, int depth = 0) {
  if (depth > 512) throw_error(EKind::Limit, "the template's variables nest deeper than 512 levels");
  switch (j.type()) {
    case Json::value_t::null: return Value::none();
    case Json::value_t::boolean: return Value::boolean(j.get<bool>());
    case Json::value_t::number_integer: return Value::integer(j.get<int64_t>());
    case Json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      if (u > uint64_t(INT64_MAX)) unsupported("integers beyond 64 bits");
      return Value::integer(int64_t(u));
    }
    case Json::value_t::number_float: return Value::number(j.get<double>());
    case Json::value_t::string: return Value::str(j.get<std::string>());
    case Json::value_t::array: {
      List items;
      items.reserve(j.size());
      for (const auto& x : j) items.push_back(from_json(x, depth + 1));
      return Value::make_list(std::move(items));
    }
    case Json::value_t::object: {
      auto d = std::make_shared<Dict>();
      for (auto it = j.begin(); it != j.end(); ++it) d->set(it.key(), from_json(it.value(), depth + 1));
      return Value::make_dict(d);
    }
    default: unsupported("binary JSON values");
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Lexer: Jinja2's rules with trim_blocks and lstrip_blocks on.

namespace {

enum class TT : uint8_t { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };

struct Token {
  TT t;
  std::string v;  // Text, Name, String (decoded), Op
  int line;
  int64_t i = 0;
  double f = 0;
};

bool ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Python's str.rstrip() (the `-` of a tag start strips every kind of whitespace).
std::string py_rstrip(const std::string& s) {
  std::u32string u = decode(s);
  size_t n = u.size();
  while (n > 0 && py_space(u[n - 1])) n--;
  if (n == u.size()) return s;
  return encode(u.substr(0, n));
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) {
    // Every newline sequence becomes "\n", and one trailing newline is
    // dropped (keep_trailing_newline=False).
    src_.reserve(source.size());
    for (size_t j = 0; j < source.size(); j++) {
      if (source[j] == '\r') {
        src_ += '\n';
        if (j + 1 < source.size() && source[j + 1] == '\n') j++;
      } else {
        src_ += source[j];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  std::vector<Token> run() {
    while (pos_ < src_.size()) {
      size_t start = find_tag(pos_);
      if (start == std::string::npos) {
        emit_text(src_.substr(pos_));
        pos_ = src_.size();
        break;
      }
      const char kind = src_[start + 1];
      size_t after = start + 2;
      char sign = 0;
      if (after < src_.size() && (src_[after] == '-' || src_[after] == '+')) sign = src_[after++];
      std::string text = src_.substr(pos_, start - pos_);
      const int text_lines = int(std::count(text.begin(), text.end(), '\n'));
      if (sign == '-') {
        text = py_rstrip(text);
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: whitespace between the line's start and a block or
        // comment tag goes.
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        if ((l_pos > 0 || line_starting_) && l_pos < text.size()) {
          std::u32string rest = decode(std::string_view(text).substr(l_pos));
          if (std::all_of(rest.begin(), rest.end(), py_space)) text.resize(l_pos);
        }
      }
      emit_text(text);
      line_ += text_lines;
      pos_ = after;
      if (kind == '#') {
        lex_comment();
      } else if (kind == '%' && raw_start()) {
        lex_raw();
      } else {
        lex_tag(kind);
      }
    }
    tokens_.push_back({TT::Eof, "", line_});
    return std::move(tokens_);
  }

 private:
  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;  // the last thing consumed ended with a newline
  std::vector<Token> tokens_;

  size_t find_tag(size_t from) const {
    for (size_t p = src_.find('{', from); p != std::string::npos; p = src_.find('{', p + 1))
      if (p + 1 < src_.size() && (src_[p + 1] == '{' || src_[p + 1] == '%' || src_[p + 1] == '#')) return p;
    return std::string::npos;
  }

  void emit_text(const std::string& text) {
    if (!text.empty()) tokens_.push_back({TT::Text, text, line_});
  }

  void advance_to(size_t p) {
    line_ += int(std::count(src_.begin() + long(pos_), src_.begin() + long(p), '\n'));
    pos_ = p;
  }

  // After `-%}`-style ends: all whitespace; after a plain end: one newline (trim_blocks).
  void finish_end(size_t end_pos, char strip) {
    size_t p = end_pos;
    if (strip == '-') {
      while (p < src_.size() && ascii_space(src_[p])) p++;
    } else if (strip == 0 && p < src_.size() && src_[p] == '\n') {
      p++;
    }
    line_starting_ = p > 0 && src_[p - 1] == '\n';
    advance_to(p);
  }

  void lex_comment() {
    const int start_line = line_;
    const size_t q = src_.find("#}", pos_);
    if (q == std::string::npos) syntax_error("missing end of comment tag", start_line);
    const char strip = q > pos_ && (src_[q - 1] == '-' || src_[q - 1] == '+') ? src_[q - 1] : 0;
    finish_end(q + 2, strip == '+' ? '+' : strip);
  }

  // {% raw %}: Jinja2 matches `raw` (and `endraw`) with optional whitespace.
  bool raw_start() const {
    size_t p = pos_;
    while (p < src_.size() && ascii_space(src_[p])) p++;
    if (src_.compare(p, 3, "raw") != 0) return false;
    p += 3;
    while (p < src_.size() && ascii_space(src_[p])) p++;
    return src_.compare(p, 2, "%}") == 0 || src_.compare(p, 3, "-%}") == 0;
  }

  void lex_raw() {
    const int start_line = line_;
    size_t p = pos_;
    while (ascii_space(src_[p])) p++;
    p += 3;
    while (ascii_space(src_[p])) p++;
    const char open_strip = src_[p] == '-' ? '-' : 0;
    finish_end(p + (open_strip ? 3 : 2), open_strip);
    // The body runs to the first {% endraw %}.
    for (size_t q = src_.find("{%", pos_); q != std::string::npos; q = src_.find("{%", q + 1)) {
      size_t r = q + 2;
      char sign = 0;
      if (r < src_.size() && (src_[r] == '-' || src_[r] == '+')) sign = src_[r++];
      while (r < src_.size() && ascii_space(src_[r])) r++;
      if (src_.compare(r, 6, "endraw") != 0) continue;
      r += 6;
      while (r < src_.size() && ascii_space(src_[r])) r++;
      char end_strip;
      if (src_.compare(r, 3, "-%}") == 0) {
        end_strip = '-';
      } else if (src_.compare(r, 3, "+%}") == 0) {
        end_strip = '+';
      } else if (src_.compare(r, 2, "%}") == 0) {
        end_strip = 0;
      } else {
        continue;
      }
      std::string text = src_.substr(pos_, q - pos_);
      if (sign == '-') {
        text = py_rstrip(text);
      } else if (sign != '+') {
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        if ((l_pos > 0 || line_starting_) && l_pos < text.size()) {
          std::u32string rest = decode(std::string_view(text).substr(l_pos));
          if (std::all_of(rest.begin(), rest.end(), py_space)) text.resize(l_pos);
        }
      }
      emit_text(text);
      advance_to(q);
      finish_end(r + (end_strip ? 3 : 2), end_strip);
      return;
    }
    syntax_error("missing end of raw directive", start_line);
  }

  void lex_tag(char kind) {
    const int start_line = line_;
    tokens_.push_back({kind == '{' ? TT::VarBegin : TT::BlockBegin, "", line_});
    const char close = kind == '{' ? '}' : '%';
    std::vector<char> balance;
    while (true) {
      if (pos_ >= src_.size())
        syntax_error(kind == '{' ? "unexpected end of template, expected '}}'" : "unexpected end of template, expected '%}'",
                     start_line);
      if (balance.empty()) {
        // Ends: `-%}` strips what follows, `+%}` keeps it, `%}` eats one newline.
        if (src_.compare(pos_, 3, std::string("-") + close + "}") == 0) {
          tokens_.push_back({kind == '{' ? TT::VarEnd : TT::BlockEnd, "", line_});
          finish_end(pos_ + 3, '-');
          return;
        }
        if (kind == '%' && src_.compare(pos_, 3, "+%}") == 0) {
          tokens_.push_back({TT::BlockEnd, "", line_});
          finish_end(pos_ + 3, '+');
          return;
        }
        if (src_.compare(pos_, 2, std::string(1, close) + "}") == 0) {
          tokens_.push_back({kind == '{' ? TT::VarEnd : TT::BlockEnd, "", line_});
          finish_end(pos_ + 2, kind == '{' ? '+' : 0);
          return;
        }
      }
      const char c = src_[pos_];
      if (ascii_space(c)) {
        size_t p = pos_;
        while (p < src_.size() && ascii_space(src_[p])) p++;
        advance_to(p);
        continue;
      }
      if (lex_number()) continue;
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t p = pos_;
        while (p < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[p])) || src_[p] == '_')) p++;
        tokens_.push_back({TT::Name, src_.substr(pos_, p - pos_), line_});
        pos_ = p;
        continue;
      }
      if (static_cast<unsigned char>(c) >= 0x80) unsupported("a name or operator with non-ASCII characters", line_);
      if (c == '\'' || c == '"') {
        lex_string(c);
        continue;
      }
      static const char* const kOps[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]",
                                         "(",  ")",  "{",  "}",  ">",  "<",  "=", ".", ":", "|", ",", ";"};
      bool matched = false;
      for (const char* op : kOps) {
        const size_t n = std::strlen(op);
        if (src_.compare(pos_, n, op) != 0) continue;
        const std::string o(op);
        if (o == "(" || o == "[" || o == "{") {
          balance.push_back(o == "(" ? ')' : o == "[" ? ']' : '}');
        } else if (o == ")" || o == "]" || o == "}") {
          if (balance.empty()) syntax_error("unexpected '" + o + "'", line_);
          if (balance.back() != o[0]) syntax_error(fmt::format("unexpected '{}', expected '{}'", o, balance.back()), line_);
          balance.pop_back();
        }
        tokens_.push_back({TT::Op, o, line_});
        pos_ += n;
        matched = true;
        break;
      }
      if (!matched) syntax_error(fmt::format("unexpected char '{}'", c), line_);
    }
  }

  static bool digit(char c) { return c >= '0' && c <= '9'; }

  // Digits with single underscores between them (Python's literal syntax).
  size_t digits_at(size_t p, bool (*ok)(char)) const {
    if (p >= src_.size() || !ok(src_[p])) return p;
    while (true) {
      while (p < src_.size() && ok(src_[p])) p++;
      if (p + 1 < src_.size() && src_[p] == '_' && ok(src_[p + 1])) {
        p++;
        continue;
      }
      return p;
    }
  }

  bool lex_number() {
    if (!digit(src_[pos_])) return false;
    auto strip_us = [](std::string s) {
      s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
      return s;
    };
    // Float: digits, then a fraction and/or an exponent (not after a dot: `x.0.1`).
    if (pos_ == 0 || src_[pos_ - 1] != '.') {
      size_t p = digits_at(pos_, digit);
      size_t q = p;
      bool is_float = false;
      if (q < src_.size() && src_[q] == '.' && q + 1 < src_.size() && digit(src_[q + 1])) {
        q = digits_at(q + 1, digit);
        is_float = true;
      }
      if (q < src_.size() && (src_[q] == 'e' || src_[q] == 'E')) {
        size_t r = q + 1;
        if (r < src_.size() && (src_[r] == '+' || src_[r] == '-')) r++;
        if (r < src_.size() && digit(src_[r])) {
          q = digits_at(r, digit);
          is_float = true;
        }
      }
      if (is_float) {
        Token t{TT::Float, "", line_};
        t.f = std::strtod(strip_us(src_.substr(pos_, q - pos_)).c_str(), nullptr);
        tokens_.push_back(t);
        pos_ = q;
        return true;
      }
    }
    // Integer: 0b / 0o / 0x prefixes, decimals without leading zeros, or zeros.
    int base = 10;
    size_t p = pos_;
    if (src_[p] == '0' && p + 1 < src_.size()) {
      const char x = char(src_[p + 1] | 32);
      if (x == 'b' || x == 'o' || x == 'x') {
        base = x == 'b' ? 2 : x == 'o' ? 8 : 16;
        auto ok = base == 2 ? +[](char c) { return c == '0' || c == '1'; }
                 : base == 8 ? +[](char c) { return c >= '0' && c <= '7'; }
                             : +[](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
        size_t q = p + 2;
        if (q < src_.size() && src_[q] == '_') q++;
        const size_t end = digits_at(q, ok);
        if (end == q) syntax_error("invalid integer literal", line_);
        p = end;
      }
    }
    if (base == 10) {
      if (src_[pos_] == '0') {
        p = pos_ + 1;
        while (p < src_.size() && (src_[p] == '0' || (src_[p] == '_' && p + 1 < src_.size() && src_[p + 1] == '0'))) p++;
      } else {
        p = digits_at(pos_, digit);
      }
    }
    std::string text = strip_us(src_.substr(pos_, p - pos_));
    if (base != 10) text = text.substr(2);
    Token t{TT::Int, "", line_};
    errno = 0;
    const unsigned long long u = std::strtoull(text.c_str(), nullptr, base);
    if (errno == ERANGE || u > uint64_t(INT64_MAX)) unsupported("integers beyond 64 bits", line_);
    t.i = int64_t(u);
    tokens_.push_back(t);
    pos_ = p;
    return true;
  }

  // A quoted string, unescaped as Python's unicode-escape codec does (after
  // Jinja2 turned non-ASCII characters into \x, \u, \U escapes).
  void lex_string(char quote) {
    const int start_line = line_;
    size_t p = pos_ + 1;
    std::string out;
    while (true) {
      if (p >= src_.size()) syntax_error("unexpected char '" + std::string(1, quote) + "'", start_line);
      const char c = src_[p];
      if (c == quote) break;
      if (c != '\\') {
        out += c;
        p++;
        continue;
      }
      if (p + 1 >= src_.size()) syntax_error("unterminated string", start_line);
      const char e = src_[p + 1];
      p += 2;
      auto hex = [&](int n) {
        uint32_t v = 0;
        for (int k = 0; k < n; k++) {
          if (p >= src_.size() || !std::isxdigit(static_cast<unsigned char>(src_[p])))
            syntax_error("truncated \\" + std::string(1, e) + " escape in a string", line_);
          const char h = src_[p++];
          v = v * 16 + uint32_t(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (h | 32) - 'a' + 10);
        }
        return v;
      };
      switch (e) {
        case '\n': break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x': append_utf8(out, hex(2)); break;
        case 'u': {
          const uint32_t v = hex(4);
          if (v >= 0xd800 && v <= 0xdfff) unsupported("surrogate escapes in strings", line_);
          append_utf8(out, v);
          break;
        }
        case 'U': {
          const uint32_t v = hex(8);
          if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) syntax_error("illegal Unicode character escape", line_);
          append_utf8(out, v);
          break;
        }
        case 'N': unsupported("\\N{...} escapes in strings", line_);
        default:
          if (e >= '0' && e <= '7') {
            uint32_t v = uint32_t(e - '0');
            for (int k = 0; k < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; k++) v = v * 8 + uint32_t(src_[p++] - '0');
            append_utf8(out, v);
          } else if (static_cast<unsigned char>(e) >= 0x80) {
            // Jinja2 escaped the character first, so the backslash escapes
            // its escape's backslash: `\é` reads as `\xe9`.
            p--;
            const std::u32string one = decode(src_.substr(p, 4)).substr(0, 1);
            const uint32_t cp = uint32_t(one[0]);
            out += cp < 0x100 ? fmt::format("\\x{:02x}", cp) : cp < 0x10000 ? fmt::format("\\u{:04x}", cp) : fmt::format("\\U{:08x}", cp);
            p += encode(one).size();
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    Token t{TT::String, std::move(out), start_line};
    tokens_.push_back(std::move(t));
    advance_to(p + 1);
  }
};

}  // namespace

// ---------------------------------------------------------------------------
// Syntax tree and parser (Jinja2's grammar and operator precedence).

namespace {

enum class EK : uint8_t {
  Const, Name, List, Tuple, Dict, Attr, Item, Slice, Call, Filter, Test, Neg, Pos, Not, Bin, And, Or, Compare, Concat, Cond,
};

struct Expr;
using ExprP = std::unique_ptr<Expr>;

struct Expr {
  EK k;
  int line;
  Value value;                                      // Const
  std::string name;                                 // Name; Attr's attribute; Filter/Test name; Bin operator
  std::vector<ExprP> items;                         // List, Tuple, Dict (key, value, ...), Concat, call arguments
  std::vector<std::pair<std::string, ExprP>> kwargs;
  ExprP a, b, c;                                    // operands; Cond: a if b else c; Slice: a:b:c
  ExprP dyn_args, dyn_kwargs;                       // *args, **kwargs
  std::vector<std::string> ops;                     // Compare: operators between items
};

enum class SK : uint8_t { Text, Output, If, For, Set, SetBlock, Macro, FilterBlock, Break, Continue, Scoped };

struct Stmt;
using StmtP = std::unique_ptr<Stmt>;
using Body = std::vector<StmtP>;

struct Target {
  std::vector<std::string> names;  // one name, or a tuple's names
  bool tuple = false;
  std::string attr;  // `ns.attr`: names[0] is the namespace
};

struct Stmt {
  SK k;
  int line;
  std::string text;                                 // Text
  ExprP expr;                                       // Output; Set value; For iterable; FilterBlock/SetBlock filters
  std::vector<std::pair<ExprP, Body>> branches;     // If: (condition or null for else, body)
  Target target;                                    // Set, SetBlock, For
  ExprP cond;                                       // For: `if` filter
  Body body, else_body;
  std::string name;                                 // Macro
  std::vector<std::string> params;
  std::vector<ExprP> defaults;                      // for the last params
  bool uses_varargs = false, uses_kwargs = false;
};

ExprP make_expr(EK k, int line) {
  auto e = std::make_unique<Expr>();
  e->k = k;
  e->line = line;
  return e;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  Body parse_template() {
    Body body = subparse({});
    if (cur().t != TT::Eof) syntax_error("unexpected '" + describe(cur()) + "'", cur().line);
    return body;
  }

 private:
  std::vector<Token> t_;
  size_t p_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<std::unordered_set<std::string>*> macro_names_;  // names read inside the macros being parsed

  static constexpr int kMaxDepth = 200;

  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& parser) : p(parser) {
      if (++p.depth_ > kMaxDepth) syntax_error("the template nests deeper than 200 levels", p.cur().line);
    }
    ~DepthGuard() { p.depth_--; }
  };

  const Token& cur() const { return t_[p_]; }
  const Token& look() const { return t_[std::min(p_ + 1, t_.size() - 1)]; }
  Token next() {
    Token t = t_[p_];
    if (p_ + 1 < t_.size()) p_++;
    return t;
  }
  static std::string describe(const Token& t) {
    switch (t.t) {
      case TT::Text: return "template data";
      case TT::VarBegin: return "{{";
      case TT::VarEnd: return "end of print statement";
      case TT::BlockBegin: return "{%";
      case TT::BlockEnd: return "end of statement block";
      case TT::Eof: return "end of template";
      case TT::Int: return std::to_string(t.i);
      case TT::Float: return float_repr(t.f);
      case TT::String: return "string";
      default: return t.v;
    }
  }
  bool is_op(const char* op) const { return cur().t == TT::Op && cur().v == op; }
  bool is_name(const char* n) const { return cur().t == TT::Name && cur().v == n; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(const char* n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }
  void expect_op(const char* op) {
    if (!is_op(op)) syntax_error(fmt::format("expected '{}', got '{}'", op, describe(cur())), cur().line);
    next();
  }
  std::string expect_name() {
    if (cur().t != TT::Name) syntax_error(fmt::format("expected a name, got '{}'", describe(cur())), cur().line);
    return next().v;
  }
  void expect(TT t, const char* what) {
    if (cur().t != t) syntax_error(fmt::format("expected '{}', got '{}'", what, describe(cur())), cur().line);
    next();
  }
  void expect_block_end() { expect(TT::BlockEnd, "end of statement block"); }

  Body subparse(const std::vector<std::string>& end_tags) {
    Body body;
    while (cur().t != TT::Eof) {
      const Token& tok = cur();
      if (tok.t == TT::Text) {
        auto s = std::make_unique<Stmt>();
        s->k = SK::Text;
        s->line = tok.line;
        s->text = tok.v;
        body.push_back(std::move(s));
        next();
      } else if (tok.t == TT::VarBegin) {
        auto s = std::make_unique<Stmt>();
        s->k = SK::Output;
        s->line = tok.line;
        next();
        s->expr = parse_tuple(false, true, {}, false);
        expect(TT::VarEnd, "end of print statement");
        body.push_back(std::move(s));
      } else if (tok.t == TT::BlockBegin) {
        next();
        if (cur().t == TT::Name && std::find(end_tags.begin(), end_tags.end(), cur().v) != end_tags.end()) return body;
        body.push_back(parse_statement());
        expect_block_end();
      } else {
        syntax_error("unexpected '" + describe(tok) + "'", tok.line);
      }
    }
    return body;
  }

  // After the tag's own tokens: `%}`, the body up to one of end_tags (left current).
  Body parse_statements(const std::vector<std::string>& end_tags, bool drop_needle, const std::string& opening,
                        int line) {
    skip_op(":");
    expect_block_end();
    Body body = subparse(end_tags);
    if (cur().t == TT::Eof) {
      std::string want;
      for (const auto& e : end_tags) want += (want.empty() ? "'" : " or '") + e + "'";
      syntax_error(fmt::format("unexpected end of template: the '{}' tag is not closed (expected {})", opening, want),
                   line);
    }
    if (drop_needle) next();
    return body;
  }

  StmtP parse_statement() {
    DepthGuard guard(*this);
    const Token tok = cur();
    if (tok.t != TT::Name) syntax_error("tag name expected", tok.line);
    const std::string& n = tok.v;
    if (n == "if") return parse_if();
    if (n == "for") return parse_for();
    if (n == "set") return parse_set();
    if (n == "macro") return parse_macro();
    if (n == "filter") return parse_filter_block();
    if (n == "generation") {
      // transformers' {% generation %} marks the assistant's part for its
      // training masks; the text renders unchanged.
      next();
      auto s = std::make_unique<Stmt>();
      s->k = SK::Scoped;
      s->line = tok.line;
      s->body = parse_statements({"endgeneration"}, true, "generation", tok.line);
      return s;
    }
    if (n == "break" || n == "continue") {
      next();
      if (loop_depth_ == 0) syntax_error("'" + n + "' outside a loop", tok.line);
      auto s = std::make_unique<Stmt>();
      s->k = n == "break" ? SK::Break : SK::Continue;
      s->line = tok.line;
      return s;
    }
    static const char* const kKnown[] = {"call",  "include", "import",     "from", "extends", "block",
                                         "print", "with",    "autoescape", "do",   "trans",   "pluralize"};
    for (const char* k : kKnown)
      if (n == k) unsupported("the '" + n + "' tag", tok.line);
    syntax_error("unknown tag '" + n + "'", tok.line);
  }

  StmtP parse_if() {
    auto s = std::make_unique<Stmt>();
    s->k = SK::If;
    s->line = next().line;
    while (true) {
      ExprP test = parse_tuple(false, false, {}, false);
      Body body = parse_statements({"elif", "else", "endif"}, false, "if", s->line);
      s->branches.emplace_back(std::move(test), std::move(body));
      const Token t = next();
      if (t.v == "elif") continue;
      if (t.v == "else") s->branches.emplace_back(nullptr, parse_statements({"endif"}, true, "if", s->line));
      break;
    }
    return s;
  }

  Target parse_assign_target(bool with_namespace, const std::vector<std::string>& extra_end) {
    Target tg;
    if (with_namespace && cur().t == TT::Name && look().t == TT::Op && look().v == ".") {
      tg.names.push_back(next().v);
      next();
      tg.attr = expect_name();
      return tg;
    }
    ExprP e = parse_tuple(true, true, extra_end, false);
    auto add = [&](const Expr& x) {
      if (x.k != EK::Name) syntax_error("can't assign to this expression", x.line);
      if (x.name == "true" || x.name == "false" || x.name == "none" || x.name == "True" || x.name == "False" ||
          x.name == "None")
        syntax_error("can't assign to a constant", x.line);
      tg.names.push_back(x.name);
    };
    if (e->k == EK::Tuple) {
      tg.tuple = true;
      for (const auto& x : e->items) add(*x);
    } else {
      add(*e);
    }
    return tg;
  }

  StmtP parse_for() {
    auto s = std::make_unique<Stmt>();
    s->k = SK::For;
    s->line = next().line;
    s->target = parse_assign_target(false, {"in"});
    if (!skip_name("in")) syntax_error("expected 'in', got '" + describe(cur()) + "'", cur().line);
    s->expr = parse_tuple(false, false, {"recursive"}, false);
    if (skip_name("if")) s->cond = parse_expression(true);
    if (is_name("recursive")) unsupported("recursive for loops", cur().line);
    loop_depth_++;
    s->body = parse_statements({"endfor", "else"}, false, "for", s->line);
    loop_depth_--;
    if (next().v == "else") s->else_body = parse_statements({"endfor"}, true, "for", s->line);
    return s;
  }

  StmtP parse_set() {
    auto s = std::make_unique<Stmt>();
    s->line = next().line;
    s->target = parse_assign_target(true, {});
    if (skip_op("=")) {
      s->k = SK::Set;
      s->expr = parse_tuple(false, true, {}, false);
      return s;
    }
    s->k = SK::SetBlock;
    s->expr = parse_filter(nullptr, false);
    s->body = parse_statements({"endset"}, true, "set", s->line);
    return s;
  }

  StmtP parse_macro() {
    auto s = std::make_unique<Stmt>();
    s->k = SK::Macro;
    s->line = next().line;
    s->name = expect_name();
    expect_op("(");
    while (!is_op(")")) {
      if (!s->params.empty()) expect_op(",");
      if (is_op(")")) break;  // a trailing comma
      s->params.push_back(expect_name());
      if (skip_op("=")) {
        s->defaults.push_back(parse_expression(true));
      } else if (!s->defaults.empty()) {
        syntax_error("non-default argument follows default argument", cur().line);
      }
    }
    expect_op(")");
    std::unordered_set<std::string> names;
    macro_names_.push_back(&names);
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    s->body = parse_statements({"endmacro"}, true, "macro", s->line);
    loop_depth_ = saved_loops;
    macro_names_.pop_back();
    // Jinja2 gives a macro extra positional or keyword arguments only when
    // its body reads `varargs` / `kwargs`; otherwise they are an error.
    s->uses_varargs = names.count("varargs") > 0;
    s->uses_kwargs = names.count("kwargs") > 0;
    if (names.count("caller")) unsupported("macros that read 'caller' (call blocks)", s->line);
    return s;
  }

  StmtP parse_filter_block() {
    auto s = std::make_unique<Stmt>();
    s->k = SK::FilterBlock;
    s->line = next().line;
    s->expr = parse_filter(nullptr, true);
    s->body = parse_statements({"endfilter"}, true, "filter", s->line);
    return s;
  }

  bool is_tuple_end(const std::vector<std::string>& extra_end) const {
    if (cur().t == TT::VarEnd || cur().t == TT::BlockEnd || is_op(")")) return true;
    if (cur().t == TT::Name)
      for (const auto& e : extra_end)
        if (cur().v == e) return true;
    return false;
  }

  ExprP parse_tuple(bool simplified, bool with_condexpr, const std::vector<std::string>& extra_end,
                    bool explicit_parens) {
    const int line = cur().line;
    std::vector<ExprP> args;
    bool is_tuple = false;
    while (true) {
      if (!args.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      args.push_back(simplified ? parse_primary() : parse_expression(with_condexpr));
      if (is_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!args.empty()) return std::move(args[0]);
      if (!explicit_parens) syntax_error("expected an expression, got '" + describe(cur()) + "'", cur().line);
    }
    auto e = make_expr(EK::Tuple, line);
    e->items = std::move(args);
    return e;
  }

  ExprP parse_expression(bool with_condexpr) {
    DepthGuard guard(*this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprP parse_condexpr() {
    int line = cur().line;
    ExprP e1 = parse_or();
    while (skip_name("if")) {
      ExprP e2 = parse_or();
      ExprP e3 = skip_name("else") ? parse_condexpr() : nullptr;
      auto c = make_expr(EK::Cond, line);
      c->a = std::move(e1);
      c->b = std::move(e2);
      c->c = std::move(e3);
      e1 = std::move(c);
      line = cur().line;
    }
    return e1;
  }

  ExprP binary(EK k, int line, ExprP a, ExprP b, std::string op = "") {
    auto e = make_expr(k, line);
    e->a = std::move(a);
    e->b = std::move(b);
    e->name = std::move(op);
    return e;
  }

  ExprP parse_or() {
    const int line = cur().line;
    ExprP left = parse_and();
    while (skip_name("or")) left = binary(EK::Or, line, std::move(left), parse_and());
    return left;
  }
  ExprP parse_and() {
    const int line = cur().line;
    ExprP left = parse_not();
    while (skip_name("and")) left = binary(EK::And, line, std::move(left), parse_not());
    return left;
  }
  ExprP parse_not() {
    if (is_name("not")) {
      DepthGuard guard(*this);
      const int line = next().line;
      auto e = make_expr(EK::Not, line);
      e->a = parse_not();
      return e;
    }
    return parse_compare();
  }
  ExprP parse_compare() {
    const int line = cur().line;
    ExprP first = parse_math1();
    std::vector<std::string> ops;
    std::vector<ExprP> operands;
    while (true) {
      if (cur().t == TT::Op &&
          (cur().v == "==" || cur().v == "!=" || cur().v == "<" || cur().v == "<=" || cur().v == ">" || cur().v == ">=")) {
        ops.push_back(next().v);
      } else if (skip_name("in")) {
        ops.push_back("in");
      } else if (is_name("not") && look().t == TT::Name && look().v == "in") {
        next();
        next();
        ops.push_back("notin");
      } else {
        break;
      }
      operands.push_back(parse_math1());
    }
    if (ops.empty()) return first;
    auto e = make_expr(EK::Compare, line);
    e->items.push_back(std::move(first));
    for (auto& o : operands) e->items.push_back(std::move(o));
    e->ops = std::move(ops);
    return e;
  }
  ExprP parse_math1() {
    const int line = cur().line;
    ExprP left = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = next().v;
      left = binary(EK::Bin, line, std::move(left), parse_concat(), op);
    }
    return left;
  }
  ExprP parse_concat() {
    const int line = cur().line;
    ExprP first = parse_math2();
    if (!is_op("~")) return first;
    auto e = make_expr(EK::Concat, line);
    e->items.push_back(std::move(first));
    while (skip_op("~")) e->items.push_back(parse_math2());
    return e;
  }
  ExprP parse_math2() {
    const int line = cur().line;
    ExprP left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = next().v;
      left = binary(EK::Bin, line, std::move(left), parse_pow(), op);
    }
    return left;
  }
  ExprP parse_pow() {
    const int line = cur().line;
    ExprP left = parse_unary(true);
    while (skip_op("**")) left = binary(EK::Bin, line, std::move(left), parse_unary(true), "**");
    return left;
  }
  ExprP parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    const int line = cur().line;
    ExprP node;
    if (is_op("-") || is_op("+")) {
      const bool neg = next().v == "-";
      node = make_expr(neg ? EK::Neg : EK::Pos, line);
      node->a = parse_unary(false);
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprP parse_primary() {
    DepthGuard guard(*this);
    const Token tok = cur();
    if (tok.t == TT::Name) {
      next();
      if (tok.v == "true" || tok.v == "True" || tok.v == "false" || tok.v == "False") {
        auto e = make_expr(EK::Const, tok.line);
        e->value = Value::boolean(tok.v == "true" || tok.v == "True");
        return e;
      }
      if (tok.v == "none" || tok.v == "None") {
        auto e = make_expr(EK::Const, tok.line);
        e->value = Value::none();
        return e;
      }
      for (auto* names : macro_names_) names->insert(tok.v);
      auto e = make_expr(EK::Name, tok.line);
      e->name = tok.v;
      return e;
    }
    if (tok.t == TT::String) {
      std::string s;
      while (cur().t == TT::String) s += next().v;  // adjacent literals concatenate
      auto e = make_expr(EK::Const, tok.line);
      e->value = Value::str(std::move(s));
      return e;
    }
    if (tok.t == TT::Int || tok.t == TT::Float) {
      next();
      auto e = make_expr(EK::Const, tok.line);
      e->value = tok.t == TT::Int ? Value::integer(tok.i) : Value::number(tok.f);
      return e;
    }
    if (is_op("(")) {
      next();
      ExprP e = parse_tuple(false, true, {}, true);
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      next();
      auto e = make_expr(EK::List, tok.line);
      while (!is_op("]")) {
        if (!e->items.empty()) expect_op(",");
        if (is_op("]")) break;
        e->items.push_back(parse_expression(true));
      }
      expect_op("]");
      return e;
    }
    if (is_op("{")) {
      next();
      auto e = make_expr(EK::Dict, tok.line);
      while (!is_op("}")) {
        if (!e->items.empty()) expect_op(",");
        if (is_op("}")) break;
        e->items.push_back(parse_expression(true));
        expect_op(":");
        e->items.push_back(parse_expression(true));
      }
      expect_op("}");
      return e;
    }
    syntax_error("unexpected '" + describe(tok) + "'", tok.line);
  }

  ExprP parse_postfix(ExprP node) {
    while (true) {
      if (is_op(".") || is_op("[")) {
        node = parse_subscript(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprP parse_filter_expr(ExprP node) {
    while (true) {
      if (is_op("|")) {
        node = parse_filter(std::move(node), false);
      } else if (is_name("is")) {
        node = parse_test(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprP parse_subscript(ExprP node) {
    const Token tok = next();
    if (tok.v == ".") {
      const Token attr = next();
      if (attr.t == TT::Name) {
        auto e = make_expr(EK::Attr, tok.line);
        e->a = std::move(node);
        e->name = attr.v;
        return e;
      }
      if (attr.t != TT::Int) syntax_error("expected name or number", attr.line);
      auto e = make_expr(EK::Item, tok.line);
      e->a = std::move(node);
      e->b = make_expr(EK::Const, attr.line);
      e->b->value = Value::integer(attr.i);
      return e;
    }
    std::vector<ExprP> args;
    while (!is_op("]")) {
      if (!args.empty()) expect_op(",");
      args.push_back(parse_subscribed());
    }
    expect_op("]");
    auto e = make_expr(EK::Item, tok.line);
    e->a = std::move(node);
    if (args.size() == 1) {
      e->b = std::move(args[0]);
    } else {
      e->b = make_expr(EK::Tuple, tok.line);
      e->b->items = std::move(args);
    }
    return e;
  }

  ExprP parse_subscribed() {
    const int line = cur().line;
    ExprP start;
    if (is_op(":")) {
      next();
    } else {
      start = parse_expression(true);
      if (!is_op(":")) return start;
      next();
    }
    auto e = make_expr(EK::Slice, line);
    e->a = std::move(start);
    if (!is_op(":") && !is_op("]") && !is_op(",")) e->b = parse_expression(true);
    if (skip_op(":")) {
      if (!is_op("]") && !is_op(",")) e->c = parse_expression(true);
    }
    return e;
  }

  void parse_call_args(Expr& e) {
    const int line = cur().line;
    expect_op("(");
    bool require_comma = false;
    auto ensure = [&](bool ok) {
      if (!ok) syntax_error("invalid syntax for function call expression", line);
    };
    while (!is_op(")")) {
      if (require_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (is_op("*")) {
        ensure(!e.dyn_args && !e.dyn_kwargs);
        next();
        e.dyn_args = parse_expression(true);
      } else if (is_op("**")) {
        ensure(!e.dyn_kwargs);
        next();
        e.dyn_kwargs = parse_expression(true);
      } else if (cur().t == TT::Name && look().t == TT::Op && look().v == "=") {
        ensure(!e.dyn_kwargs);
        std::string key = next().v;
        next();
        e.kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        ensure(!e.dyn_args && !e.dyn_kwargs && e.kwargs.empty());
        e.items.push_back(parse_expression(true));
      }
      require_comma = true;
    }
    expect_op(")");
  }

  ExprP parse_call(ExprP node) {
    auto e = make_expr(EK::Call, cur().line);
    e->a = std::move(node);
    parse_call_args(*e);
    return e;
  }

  // `| name(args) | ...`; start_inline: the first filter has no pipe ({% filter %}).
  ExprP parse_filter(ExprP node, bool start_inline) {
    while (is_op("|") || start_inline) {
      if (!start_inline) next();
      const Token tok = cur();
      std::string name = expect_name();
      while (skip_op(".")) {
      name += '.';  // (not "." + ...: GCC 12 warns falsely about that concatenation)
      name += expect_name();
    }
      auto e = make_expr(EK::Filter, tok.line);
      e->a = std::move(node);
      e->name = std::move(name);
      if (is_op("(")) parse_call_args(*e);
      node = std::move(e);
      start_inline = false;
    }
    return node;
  }

  ExprP parse_test(ExprP node) {
    const int line = next().line;
    const bool negated = skip_name("not");
    std::string name = expect_name();
    while (skip_op(".")) {
      name += '.';  // (not "." + ...: GCC 12 warns falsely about that concatenation)
      name += expect_name();
    }
    auto e = make_expr(EK::Test, line);
    e->a = std::move(node);
    e->name = std::move(name);
    if (is_op("(")) {
      parse_call_args(*e);
    } else if ((cur().t == TT::Name || cur().t == TT::String || cur().t == TT::Int || cur().t == TT::Float ||
                is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) syntax_error("you cannot chain multiple tests with is", cur().line);
      e->items.push_back(parse_postfix(parse_primary()));
    }
    if (!negated) return e;
    auto n = make_expr(EK::Not, line);
    n->a = std::move(e);
    return n;
  }
};

}  // namespace

// ---------------------------------------------------------------------------
// Evaluation.

namespace {

struct Scope {
  std::shared_ptr<Scope> parent;
  std::unordered_map<std::string, Value> vars;

  const Value* find(const std::string& n) const {
    for (const Scope* s = this; s; s = s->parent.get()) {
      auto it = s->vars.find(n);
      if (it != s->vars.end()) return &it->second;
    }
    return nullptr;
  }
};
using ScopeP = std::shared_ptr<Scope>;

ScopeP child_scope(const ScopeP& parent) {
  auto s = std::make_shared<Scope>();
  s->parent = parent;
  return s;
}

enum class Flow { Normal, Break, Continue };

// Re-throws an error raised below without a line with `line`.
template <class F>
auto with_line(int line, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const TemplateError& e) {
    if (e.line != 0) throw;
    throw TemplateError(e.kind, e.detail, line);
  }
}

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// Python's str() of the argument as filters take it (soft_str keeps a Markup).
Value soft_str(const Value& v) { return v.k == K::Str ? v : Value::str(py_str(v)); }

using Bound = std::vector<std::optional<Value>>;

// Arguments matched to a Python signature's parameter names.
Bound bind(const std::string& fname, Args& a, std::initializer_list<const char*> names) {
  Bound out(names.size());
  if (a.pos.size() > names.size())
    render_error(fmt::format("{}() takes at most {} arguments ({} given)", fname, names.size(), a.pos.size()));
  for (size_t j = 0; j < a.pos.size(); j++) out[j] = a.pos[j];
  for (auto& [key, val] : a.kw) {
    size_t idx = 0;
    for (const char* n : names) {
      if (key == n) break;
      idx++;
    }
    if (idx == names.size()) render_error(fmt::format("{}() got an unexpected keyword argument '{}'", fname, key));
    if (out[idx]) render_error(fmt::format("{}() got multiple values for argument '{}'", fname, key));
    out[idx] = val;
  }
  return out;
}

int64_t int_arg(const std::optional<Value>& v, int64_t def, const char* what) {
  if (!v || v->k == K::None) return def;
  if (!v->is_int()) render_error(fmt::format("{} must be an integer, not '{}'", what, type_name(*v)));
  return v->i;
}

std::string str_arg(const Value& v, const char* what) {
  if (v.k != K::Str) render_error(fmt::format("{} must be a string, not '{}'", what, type_name(v)));
  return v.s;
}

// Python's sequence index: negative counts from the end; nullopt when out of range.
std::optional<size_t> py_index(int64_t i, size_t n) {
  if (i < 0) i += int64_t(n);
  if (i < 0 || i >= int64_t(n)) return std::nullopt;
  return size_t(i);
}

// The indices a Python slice selects.
struct Slice {
  int64_t start, stop, step;  // slice.indices(n)
  std::vector<size_t> indices;
};

Slice slice_indices(size_t n, const Value& start, const Value& stop, const Value& step) {
  auto get = [](const Value& v) -> std::optional<int64_t> {
    if (v.k == K::None) return std::nullopt;
    if (!v.is_int()) render_error("slice indices must be integers or None or have an __index__ method");
    return v.i;
  };
  const int64_t len = int64_t(n);
  const int64_t st = get(step).value_or(1);
  if (st == 0) render_error("slice step cannot be zero");
  auto clamp = [&](std::optional<int64_t> v, int64_t def) {
    if (!v) return def;
    int64_t x = *v;
    if (x < 0) x += len;
    if (st > 0) return std::clamp<int64_t>(x, 0, len);
    return std::clamp<int64_t>(x, -1, len - 1);
  };
  const int64_t b = clamp(get(start), st > 0 ? 0 : len - 1);
  const int64_t e = clamp(get(stop), st > 0 ? len : -1);
  Slice out{b, e, st, {}};
  // The count first: stepping past the end could overflow.
  const int64_t count = st > 0 ? (b < e ? (e - b - 1) / st + 1 : 0) : (b > e ? (b - e - 1) / -st + 1 : 0);
  for (int64_t k = 0; k < count; k++) out.indices.push_back(size_t(b + k * st));
  return out;
}

bool in_set(const std::string& n, std::initializer_list<const char*> names) {
  for (const char* x : names)
    if (n == x) return true;
  return false;
}

// Every attribute of Python's str, list and dict: those the interpreter does
// not implement are refused by name; any other name is Undefined, as in Jinja2.
const std::initializer_list<const char*> kStrAttrs = {
    "capitalize", "casefold",  "center",     "count",     "encode",       "endswith",  "expandtabs", "find",
    "format",     "format_map", "index",     "isalnum",   "isalpha",      "isascii",   "isdecimal",  "isdigit",
    "isidentifier", "islower", "isnumeric",  "isprintable", "isspace",    "istitle",   "isupper",    "join",
    "ljust",      "lower",     "lstrip",     "maketrans", "partition",    "removeprefix", "removesuffix", "replace",
    "rfind",      "rindex",    "rjust",      "rpartition", "rsplit",      "rstrip",    "split",      "splitlines",
    "startswith", "strip",     "swapcase",   "title",     "translate",    "upper",     "zfill"};
const std::initializer_list<const char*> kListAttrs = {"append", "clear", "copy",    "count", "extend", "index",
                                                       "insert", "pop",   "remove", "reverse", "sort"};
const std::initializer_list<const char*> kListMutators = {"append", "clear", "extend", "insert",
                                                          "pop",    "remove", "reverse", "sort"};
const std::initializer_list<const char*> kDictAttrs = {"clear", "copy",       "fromkeys", "get",    "items",
                                                       "keys",  "pop",        "popitem",  "setdefault", "update",
                                                       "values"};
const std::initializer_list<const char*> kDictMutators = {"clear", "pop", "popitem", "setdefault", "update"};

// Namespaces and loops are the only containers a template changes in place,
// so every reference cycle passes through one (`{% set ns.me = ns %}`: legal
// Jinja2, which Python's collector frees and shared ownership never would).
// Rendering keeps a weak reference to each and, when it ends, empties those
// still alive.
class CycleBreaker {
 public:
  CycleBreaker() = default;
  CycleBreaker(const CycleBreaker&) = delete;
  CycleBreaker& operator=(const CycleBreaker&) = delete;
  void add(const std::shared_ptr<Dict>& d) {
    if (all_.size() >= compact_at_) {  // drop the freed ones: the list stays within twice the live count
      std::erase_if(all_, [](const std::weak_ptr<Dict>& w) { return w.expired(); });
      compact_at_ = std::max<size_t>(1024, 2 * all_.size());
    }
    all_.push_back(d);
  }
  ~CycleBreaker() {
    std::vector<Value> held;
    for (const auto& w : all_) {
      if (auto d = w.lock()) {
        for (auto& kv : d->items) held.push_back(std::move(kv.second));
        d->items.clear();
        d->index.clear();
      }
    }
    Graveyard::bury([&held](std::vector<Value>& q) {
      for (auto& v : held) q.push_back(std::move(v));
    });
  }

 private:
  std::vector<std::weak_ptr<Dict>> all_;
  size_t compact_at_ = 1024;
};

struct Interp {
  const RenderOptions& opt;
  CycleBreaker cycles;
  uint64_t steps = 0;
  uint64_t bytes = 0;
  int depth = 0;

  explicit Interp(const RenderOptions& o) : opt(o) {}

  void step(uint64_t n = 1) {
    steps += n;
    if (steps > opt.max_steps)
      throw_error(EKind::Limit, fmt::format("rendering took more than {} steps", opt.max_steps));
  }
  // A width or repeat count the template asks for (center, indent, zfill, ...).
  int64_t width(int64_t w) {
    if (w > int64_t(opt.max_output_bytes))
      throw_error(EKind::Limit, fmt::format("a width of {} (strings are limited to {} bytes)", w, opt.max_output_bytes));
    return w;
  }
  // A string being built in a loop: stops it as soon as it passes the limit.
  void grown(const std::string& out) {
    if (out.size() > opt.max_output_bytes)
      throw_error(EKind::Limit, fmt::format("a string of more than {} bytes", opt.max_output_bytes));
  }
  // n values copied into a new list: counted as steps and as bytes.
  void copies(size_t n) {
    step(n);
    account(n * sizeof(Value));
  }
  // Every string built is counted: bounds both the output and the work.
  void account(size_t n) {
    if (n > opt.max_output_bytes)
      throw_error(EKind::Limit, fmt::format("a string of more than {} bytes", opt.max_output_bytes));
    bytes += n;
    if (bytes / 16 > opt.max_output_bytes)
      throw_error(EKind::Limit, fmt::format("rendering built more than {} bytes of text", opt.max_output_bytes * 16));
  }
  void emit(std::string& out, std::string_view s) {
    if (out.size() + s.size() > opt.max_output_bytes)
      throw_error(EKind::Limit, fmt::format("output longer than {} bytes", opt.max_output_bytes));
    bytes += s.size();
    out += s;
  }
  Value make_str(std::string s, bool markup = false) {
    account(s.size());
    return Value::str(std::move(s), markup);
  }

  // ---- statements

  Flow exec(const Body& body, const ScopeP& sc, std::string& out) {
    for (const auto& s : body) {
      step();
      const Flow f = with_line(s->line, [&] { return exec_one(*s, sc, out); });
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  Flow exec_one(const Stmt& s, const ScopeP& sc, std::string& out) {
    switch (s.k) {
      case SK::Text: emit(out, s.text); return Flow::Normal;
      case SK::Output: {
        const Value v = eval(*s.expr, sc);
        if (v.k == K::Str) {
          emit(out, v.s);
        } else {
          emit(out, py_str(v));
        }
        return Flow::Normal;
      }
      case SK::If:
        for (const auto& [cond, body] : s.branches)
          if (!cond || truthy(eval(*cond, sc))) return exec(body, sc, out);
        return Flow::Normal;
      case SK::For: return exec_for(s, sc, out);
      case SK::Set: assign(s.target, eval(*s.expr, sc), sc); return Flow::Normal;
      case SK::SetBlock: {
        std::string text;
        exec(s.body, child_scope(sc), text);
        Value v = Value::str(std::move(text));
        if (s.expr) v = apply_filters(*s.expr, v, sc);
        assign(s.target, v, sc);
        return Flow::Normal;
      }
      case SK::Macro: {
        Value v;
        v.k = K::Func;
        v.fn = std::make_shared<Func>();
        v.fn->name = s.name;
        v.fn->macro = &s;
        v.fn->closure = sc;
        sc->vars[s.name] = v;
        return Flow::Normal;
      }
      case SK::FilterBlock: {
        std::string text;
        exec(s.body, child_scope(sc), text);
        const Value v = apply_filters(*s.expr, Value::str(std::move(text)), sc);
        emit(out, py_str(v));
        return Flow::Normal;
      }
      case SK::Scoped: return exec(s.body, child_scope(sc), out);
      case SK::Break: return Flow::Break;
      case SK::Continue: return Flow::Continue;
    }
    return Flow::Normal;
  }

  void assign(const Target& t, const Value& v, const ScopeP& sc) {
    if (!t.attr.empty()) {
      const Value* ns = sc->find(t.names[0]);
      if (!ns || ns->k != K::Ns) render_error("can't assign attribute on non-namespace object");
      ns->dict->set(t.attr, v);
      return;
    }
    if (!t.tuple) {
      sc->vars[t.names[0]] = v;
      return;
    }
    List items = iterate(v);
    if (items.size() != t.names.size())
      render_error(fmt::format("cannot unpack {} values into {} names", items.size(), t.names.size()));
    for (size_t j = 0; j < items.size(); j++) sc->vars[t.names[j]] = items[j];
  }

  Flow exec_for(const Stmt& s, const ScopeP& sc, std::string& out) {
    const List all = iterate(eval(*s.expr, sc));
    List items;
    if (s.cond) {
      for (const auto& x : all) {
        step();
        auto test_scope = child_scope(sc);
        assign(s.target, x, test_scope);
        if (truthy(eval(*s.cond, test_scope))) items.push_back(x);
      }
    } else {
      items = all;
    }
    if (items.empty()) {
      if (!s.else_body.empty()) return exec(s.else_body, child_scope(sc), out);
      return Flow::Normal;
    }
    // One LoopContext, changed in place, as Jinja2's is.
    Value loop;
    loop.k = K::Loop;
    loop.dict = std::make_shared<Dict>();
    cycles.add(loop.dict);
    const int64_t n = int64_t(items.size());
    for (int64_t j = 0; j < n; j++) {
      step();
      Dict& d = *loop.dict;
      d.set("index0", Value::integer(j));
      d.set("index", Value::integer(j + 1));
      d.set("revindex0", Value::integer(n - j - 1));
      d.set("revindex", Value::integer(n - j));
      d.set("first", Value::boolean(j == 0));
      d.set("last", Value::boolean(j == n - 1));
      d.set("length", Value::integer(n));
      d.set("depth", Value::integer(1));
      d.set("depth0", Value::integer(0));
      d.set("previtem", j > 0 ? items[size_t(j - 1)] : Value::undefined("there is no previous item"));
      d.set("nextitem", j + 1 < n ? items[size_t(j + 1)] : Value::undefined("there is no next item"));
      auto it_scope = child_scope(sc);
      it_scope->vars["loop"] = loop;
      assign(s.target, items[size_t(j)], it_scope);
      if (exec(s.body, it_scope, out) == Flow::Break) break;
    }
    return Flow::Normal;
  }

  // ---- expressions

  Value eval(const Expr& e, const ScopeP& sc) {
    return with_line(e.line, [&] { return eval_inner(e, sc); });
  }

  Value eval_inner(const Expr& e, const ScopeP& sc) {
    switch (e.k) {
      case EK::Const: return e.value;
      case EK::Name: {
        const Value* v = sc->find(e.name);
        return v ? *v : Value::undefined("'" + e.name + "' is undefined");
      }
      case EK::List:
      case EK::Tuple: {
        List items;
        for (const auto& x : e.items) items.push_back(eval(*x, sc));
        return Value::make_list(std::move(items), e.k == EK::Tuple);
      }
      case EK::Dict: {
        auto d = std::make_shared<Dict>();
        for (size_t j = 0; j + 1 < e.items.size(); j += 2) {
          const Value key = eval(*e.items[j], sc);
          hash_key(key);  // unhashable keys are a TypeError
          d->set(key, eval(*e.items[j + 1], sc));
        }
        return Value::make_dict(d);
      }
      case EK::Attr: return get_attr(eval(*e.a, sc), e.name);
      case EK::Item: {
        const Value obj = eval(*e.a, sc);
        if (e.b->k == EK::Slice) {
          const Expr& sl = *e.b;
          const Value absent = Value::none();
          return slice(obj, sl.a ? eval(*sl.a, sc) : absent, sl.b ? eval(*sl.b, sc) : absent,
                       sl.c ? eval(*sl.c, sc) : absent);
        }
        return get_item(obj, eval(*e.b, sc));
      }
      case EK::Slice: syntax_error("a slice outside a subscript", e.line);
      case EK::Call: {
        const Value f = eval(*e.a, sc);
        Args args = eval_args(e, sc);
        return call(f, args);
      }
      case EK::Filter: return apply_filters(e, Value(), sc);
      case EK::Test: {
        const Value v = eval(*e.a, sc);
        Args args = eval_args(e, sc);
        return Value::boolean(run_test(e.name, v, args));
      }
      case EK::Neg:
      case EK::Pos: {
        const Value v = eval(*e.a, sc);
        if (v.is_undef()) undefined_error(v);
        if (!v.is_num())
          render_error(fmt::format("bad operand type for unary {}: '{}'", e.k == EK::Neg ? '-' : '+', type_name(v)));
        if (e.k == EK::Pos) return v.k == K::Bool ? Value::integer(v.i) : v;
        if (v.k == K::Float) return Value::number(-v.f);
        if (v.i == INT64_MIN) unsupported("integers beyond 64 bits");
        return Value::integer(-v.i);
      }
      case EK::Not: return Value::boolean(!truthy(eval(*e.a, sc)));
      case EK::And: {
        Value a = eval(*e.a, sc);
        return truthy(a) ? eval(*e.b, sc) : a;
      }
      case EK::Or: {
        Value a = eval(*e.a, sc);
        return truthy(a) ? a : eval(*e.b, sc);
      }
      case EK::Bin: return binop(e.name, eval(*e.a, sc), eval(*e.b, sc));
      case EK::Compare: {
        Value left = eval(*e.items[0], sc);
        for (size_t j = 0; j < e.ops.size(); j++) {
          Value right = eval(*e.items[j + 1], sc);
          if (!compare(e.ops[j], left, right)) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case EK::Concat: {
        std::string s;
        for (const auto& x : e.items) s += py_str(eval(*x, sc));
        return make_str(std::move(s));
      }
      case EK::Cond:
        if (truthy(eval(*e.b, sc))) return eval(*e.a, sc);
        if (e.c) return eval(*e.c, sc);
        return Value::undefined(fmt::format(
            "the inline if-expression on line {} evaluated to false and no else section was defined.", e.line));
    }
    return Value();
  }

  Args eval_args(const Expr& e, const ScopeP& sc) {
    Args a;
    for (const auto& x : e.items) a.pos.push_back(eval(*x, sc));
    for (const auto& [k, x] : e.kwargs) a.kw.emplace_back(k, eval(*x, sc));
    if (e.dyn_args) {
      for (auto& x : iterate(eval(*e.dyn_args, sc))) a.pos.push_back(std::move(x));
    }
    if (e.dyn_kwargs) {
      const Value d = eval(*e.dyn_kwargs, sc);
      if (d.k != K::Dict) render_error("argument after ** must be a mapping");
      for (const auto& [k, x] : d.dict->items) {
        if (k.k != K::Str) render_error("keywords must be strings");
        a.kw.emplace_back(k.s, x);
      }
    }
    return a;
  }

  // The items a for loop, list() or a filter sees.
  List iterate(const Value& v) {
    switch (v.k) {
      case K::Undef: return {};
      case K::List: copies(v.list->size()); return *v.list;
      case K::Dict: {
        List keys;
        for (const auto& kv : v.dict->items) keys.push_back(kv.first);
        copies(keys.size());
        return keys;
      }
      case K::Str: {
        List chars;
        for (char32_t c : decode(v.s)) {
          std::string s;
          append_utf8(s, c);
          chars.push_back(Value::str(std::move(s), v.markup));
        }
        copies(chars.size());
        return chars;
      }
      default: render_error(fmt::format("'{}' object is not iterable", type_name(v)));
    }
  }

  Value bound_method(const Value& obj, const std::string& name) {
    return make_func(name, [obj, name](Interp& in, Args& a) { return in.call_method(obj, name, a); });
  }

  // obj.name: an attribute (a method) first, then an item (Jinja2's getattr).
  Value get_attr(const Value& obj, const std::string& name) {
    const std::string tname = type_name(obj);
    switch (obj.k) {
      case K::Undef: undefined_error(obj);
      case K::Str:
        if (in_set(name, kStrAttrs)) return bound_method(obj, name);
        break;
      case K::List:
        if (obj.is_plain_list() && in_set(name, kListAttrs)) return bound_method(obj, name);
        break;
      case K::Dict:
        if (in_set(name, kDictAttrs)) return bound_method(obj, name);
        if (const Value* v = obj.dict->find(name)) return *v;
        break;
      case K::Ns:
        if (const Value* v = obj.dict->find(name)) return *v;
        break;
      case K::Loop:
        if (name == "cycle" || name == "changed") return bound_method(obj, name);
        if (const Value* v = obj.dict->find(name)) return *v;
        break;
      default: break;
    }
    return Value::undefined(fmt::format("'{} object' has no attribute '{}'", tname, name));
  }

  // obj[key]: an item first, then an attribute named by a string key (Jinja2's getitem).
  Value get_item(const Value& obj, const Value& key) {
    const std::string tname = type_name(obj);
    switch (obj.k) {
      case K::Undef: undefined_error(obj);
      case K::Dict:
        if (key.k == K::List && (!key.tuple || !key.is_plain_list()))
          render_error(fmt::format("unhashable type: '{}'", type_name(key)));
        if (key.k == K::Dict) render_error("unhashable type: 'dict'");
        if (const Value* v = obj.dict->find(key)) return *v;
        break;
      case K::List:
        // Generators and dict views are not subscriptable: Jinja2 gives Undefined.
        if (!obj.is_plain_list() && obj.view != Value::View::Range) break;
        if (key.is_int()) {
          if (auto j = py_index(key.i, obj.list->size())) return (*obj.list)[*j];
          return Value::undefined(fmt::format("{} object has no element {}", tname, key.i));
        }
        break;
      case K::Str:
        if (key.is_int()) {
          const std::u32string u = decode(obj.s);
          if (auto j = py_index(key.i, u.size())) {
            std::string s;
            append_utf8(s, u[*j]);
            return Value::str(std::move(s), obj.markup);
          }
          return Value::undefined(fmt::format("str object has no element {}", key.i));
        }
        break;
      default: break;
    }
    if (key.k == K::Str && obj.k != K::Dict) return get_attr(obj, key.s);
    if (key.k == K::Str && in_set(key.s, kDictAttrs)) return bound_method(obj, key.s);
    return Value::undefined(fmt::format("'{} object' has no attribute '{}'", tname, py_str(key)));
  }

  Value slice(const Value& obj, const Value& a, const Value& b, const Value& c) {
    if (obj.k == K::Undef) undefined_error(obj);
    if (obj.k == K::List && (obj.is_plain_list() || obj.view == Value::View::Range)) {
      const Slice sl = slice_indices(obj.list->size(), a, b, c);
      List out;
      for (size_t j : sl.indices) out.push_back((*obj.list)[j]);
      copies(out.size());
      Value v = Value::make_list(std::move(out), obj.tuple);
      if (obj.view == Value::View::Range) {
        // range(a, b, s)[i:j:k] is range(a + i*s, a + j*s, s*k), as CPython computes it.
        v.view = Value::View::Range;
        v.i = obj.i + sl.start * obj.step;
        v.stop = obj.i + sl.stop * obj.step;
        v.step = obj.step * sl.step;
      }
      return v;
    }
    if (obj.k == K::Str) {
      const std::u32string u = decode(obj.s);
      std::string out;
      for (size_t j : slice_indices(u.size(), a, b, c).indices) append_utf8(out, u[j]);
      return make_str(std::move(out), obj.markup);
    }
    return Value::undefined(fmt::format("'{} object' is not subscriptable", type_name(obj)));
  }

  Value call(const Value& f, Args& args) {
    step();
    if (f.k == K::Undef) undefined_error(f);
    if (f.k != K::Func) render_error(fmt::format("'{}' object is not callable", type_name(f)));
    if (f.fn->native) return f.fn->native(*this, args);
    return call_macro(*f.fn, args);
  }

  Value call_macro(const Func& f, Args& args) {
    const Stmt& m = *f.macro;
    ScopeP closure = f.closure.lock();
    if (!closure) unsupported("calling a macro outside the block that defined it");
    if (depth >= opt.max_depth)
      throw_error(EKind::Limit, fmt::format("macro calls nest deeper than {} levels", opt.max_depth));
    auto sc = child_scope(closure);
    const size_t np = m.params.size();
    std::vector<std::optional<Value>> bound(np);
    List extra;
    for (size_t j = 0; j < args.pos.size(); j++) {
      if (j < np) {
        bound[j] = args.pos[j];
      } else if (m.uses_varargs) {
        extra.push_back(args.pos[j]);
      } else {
        render_error(fmt::format("macro '{}' takes not more than {} argument(s)", m.name, np));
      }
    }
    auto kwargs = std::make_shared<Dict>();
    for (auto& [k, v] : args.kw) {
      auto it = std::find(m.params.begin(), m.params.end(), k);
      if (it != m.params.end()) {
        const size_t j = size_t(it - m.params.begin());
        if (bound[j]) render_error(fmt::format("macro '{}' got multiple values for argument '{}'", m.name, k));
        bound[j] = v;
      } else if (m.uses_kwargs) {
        kwargs->set(k, v);
      } else {
        render_error(fmt::format("macro '{}' takes no keyword argument '{}'", m.name, k));
      }
    }
    const size_t first_default = np - m.defaults.size();
    for (size_t j = 0; j < np; j++) {
      if (bound[j]) {
        sc->vars[m.params[j]] = *bound[j];
      } else if (j >= first_default) {
        sc->vars[m.params[j]] = eval(*m.defaults[j - first_default], sc);
      } else {
        sc->vars[m.params[j]] = Value::undefined(fmt::format("parameter '{}' was not provided", m.params[j]));
      }
    }
    if (m.uses_varargs) sc->vars["varargs"] = Value::make_list(std::move(extra), true);
    if (m.uses_kwargs) sc->vars["kwargs"] = Value::make_dict(kwargs);
    depth++;
    std::string out;
    try {
      exec(m.body, sc, out);
    } catch (...) {
      depth--;
      throw;
    }
    depth--;
    return Value::str(std::move(out));
  }

  // ---- operators

  Value binop(const std::string& op, const Value& a, const Value& b) {
    if (a.is_undef()) undefined_error(a);
    if (b.is_undef()) undefined_error(b);
    auto type_err = [&]() -> Value {
      render_error(
          fmt::format("unsupported operand type(s) for {}: '{}' and '{}'", op, type_name(a), type_name(b)));
    };
    auto overflow = []() -> Value { unsupported("integers beyond 64 bits"); };
    if (op == "+") {
      if (a.is_int() && b.is_int()) {
        int64_t r;
        if (__builtin_add_overflow(a.i, b.i, &r)) return overflow();
        return Value::integer(r);
      }
      if (a.is_num() && b.is_num()) return Value::number(a.as_double() + b.as_double());
      if (a.k == K::Str && b.k == K::Str) {
        // Markup + str escapes the str (markupsafe), whichever side it is on.
        if (a.markup || b.markup)
          return make_str((a.markup ? a.s.str() : html_escape(a.s)) + (b.markup ? b.s.str() : html_escape(b.s)), true);
        return make_str(a.s.str() + b.s.str());
      }
      if (a.is_plain_list() && b.is_plain_list() && a.tuple == b.tuple) {
        copies(a.list->size() + b.list->size());
        List out = *a.list;
        out.insert(out.end(), b.list->begin(), b.list->end());
        return Value::make_list(std::move(out), a.tuple);
      }
      if (a.k == K::Str && b.k != K::Str)
        render_error(fmt::format("can only concatenate str (not \"{}\") to str", type_name(b)));
      if (a.k == K::List && b.k != K::List)
        render_error(fmt::format("can only concatenate {} (not \"{}\") to {}", type_name(a), type_name(b), type_name(a)));
      return type_err();
    }
    if (op == "*") {
      auto is_seq = [](const Value& v) { return v.k == K::Str || v.is_plain_list(); };
      const Value* seq = is_seq(a) ? &a : is_seq(b) ? &b : nullptr;
      const Value* cnt = seq == &a ? &b : &a;
      if (seq && cnt->is_int()) {
        const size_t unit = seq->k == K::Str ? seq->s.size() : seq->list->size();
        // An empty sequence repeated any number of times is empty (no loop over the count).
        const int64_t n = unit == 0 ? 0 : std::max<int64_t>(cnt->i, 0);
        if (unit && uint64_t(n) > opt.max_output_bytes / unit)
          throw_error(EKind::Limit, fmt::format("a string or list of more than {} bytes", opt.max_output_bytes));
        if (seq->k == K::Str) {
          account(size_t(n) * unit);
          std::string out;
          out.reserve(size_t(n) * unit);
          for (int64_t j = 0; j < n; j++) out += seq->s;
          return Value::str(std::move(out), seq->markup);
        }
        copies(size_t(n) * unit);
        List out;
        for (int64_t j = 0; j < n; j++) out.insert(out.end(), seq->list->begin(), seq->list->end());
        return Value::make_list(std::move(out), seq->tuple);
      }
      if (a.is_int() && b.is_int()) {
        int64_t r;
        if (__builtin_mul_overflow(a.i, b.i, &r)) return overflow();
        return Value::integer(r);
      }
      if (a.is_num() && b.is_num()) return Value::number(a.as_double() * b.as_double());
      return type_err();
    }
    if (op == "%" && a.k == K::Str) unsupported("printf-style string formatting ('...' % value)");
    if (!a.is_num() || !b.is_num()) return type_err();
    const bool ints = a.is_int() && b.is_int();
    const double x = a.as_double(), y = b.as_double();
    if (op == "-") {
      if (ints) {
        int64_t r;
        if (__builtin_sub_overflow(a.i, b.i, &r)) return overflow();
        return Value::integer(r);
      }
      return Value::number(x - y);
    }
    if (op == "/") {
      if (y == 0) render_error("division by zero");
      return Value::number(x / y);
    }
    if (op == "//" || op == "%") {
      if (ints) {
        if (b.i == 0) render_error("integer division or modulo by zero");
        if (a.i == INT64_MIN && b.i == -1) return overflow();
        int64_t q = a.i / b.i, r = a.i % b.i;
        if (r != 0 && ((r < 0) != (b.i < 0))) {
          q -= 1;
          r += b.i;
        }
        return Value::integer(op == "//" ? q : r);
      }
      if (y == 0) render_error("float division by zero");
      // CPython's float_divmod.
      double mod = std::fmod(x, y);
      double div = (x - mod) / y;
      if (mod != 0) {
        if ((y < 0) != (mod < 0)) {
          mod += y;
          div -= 1.0;
        }
      } else {
        mod = std::copysign(0.0, y);
      }
      double floordiv;
      if (div != 0) {
        floordiv = std::floor(div);
        if (div - floordiv > 0.5) floordiv += 1.0;
      } else {
        floordiv = std::copysign(0.0, x / y);
      }
      return Value::number(op == "//" ? floordiv : mod);
    }
    if (op == "**") {
      if (ints && b.i >= 0) {
        int64_t r = 1, base = a.i, e = b.i;
        while (e > 0) {
          if (e & 1) {
            if (__builtin_mul_overflow(r, base, &r)) return overflow();
          }
          e >>= 1;
          if (e > 0 && __builtin_mul_overflow(base, base, &base)) return overflow();
        }
        return Value::integer(r);
      }
      if (x == 0 && y < 0) render_error("0.0 cannot be raised to a negative power");
      const double r = std::pow(x, y);
      if (std::isnan(r) && !std::isnan(x) && !std::isnan(y)) unsupported("complex numbers");
      return Value::number(r);
    }
    return type_err();
  }

  bool contains(const Value& container, const Value& item) {
    switch (container.k) {
      case K::Undef: return false;
      case K::Str:
        if (item.k != K::Str)
          render_error(fmt::format("'in <string>' requires string as left operand, not {}", type_name(item)));
        return container.s.find(item.s) != std::string::npos;
      case K::List:
        for (const auto& x : *container.list)
          if (py_eq(x, item)) return true;
        return false;
      case K::Dict:
        return container.dict->find(item) != nullptr;
      default: render_error(fmt::format("argument of type '{}' is not iterable", type_name(container)));
    }
  }

  bool compare(const std::string& op, const Value& a, const Value& b) {
    if (op == "==") return py_eq(a, b);
    if (op == "!=") return !py_eq(a, b);
    if (op == "in") return contains(b, a);
    if (op == "notin") return !contains(b, a);
    if (op == "<") return py_lt(a, b, "<");
    if (op == ">") return py_lt(b, a, ">");
    if (op == "<=") return py_lt(a, b, "<=") || py_eq(a, b);
    if (op == ">=") return py_lt(b, a, ">=") || py_eq(a, b);
    unsupported("the operator " + op);
  }

  Value apply_filters(const Expr& f, const Value& base, const ScopeP& sc);
  Value filter(const std::string& name, const Value& v, Args& a);
  bool run_test(const std::string& name, const Value& v, Args& a);
  Value call_method(const Value& obj, const std::string& name, Args& a);
  Value str_method(const Value& obj, const std::string& name, Args& a);
  Value str_format(const std::string& fmt, Args& a);
  Value attr_path(const Value& v, const std::string& attribute);
  List sorted(List items, bool reverse, bool case_sensitive, const std::string& attribute, bool by_value);
};

}  // namespace

// ---------------------------------------------------------------------------
// Filters, tests and methods: Jinja2 3.1's built-ins and Python's str/dict/list.

namespace {

Value make_gen(List items) {
  Value v = Value::make_list(std::move(items));
  v.view = Value::View::Gen;
  return v;
}

size_t py_len(const Value& v) {
  switch (v.k) {
    case K::Undef: return 0;
    case K::Str: return decode(v.s).size();
    case K::List:
      if (v.view == Value::View::Gen) render_error("object of type 'generator' has no len()");
      return v.list->size();
    case K::Dict: return v.dict->items.size();
    default: render_error(fmt::format("object of type '{}' has no len()", type_name(v)));
  }
}

// str.strip family; chars: the set to remove (None: whitespace).
std::string py_strip(const std::string& s, const Value* chars, bool left, bool right) {
  std::u32string u = decode(s);
  std::u32string set;
  const bool ws = !chars || chars->k == K::None;
  if (!ws) {
    if (chars->k != K::Str) render_error(fmt::format("strip arg must be None or str, not {}", type_name(*chars)));
    set = decode(chars->s);
  }
  auto drop = [&](char32_t c) { return ws ? py_space(c) : set.find(c) != std::u32string::npos; };
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && drop(u[b])) b++;
  if (right)
    while (e > b && drop(u[e - 1])) e--;
  return encode(u.substr(b, e - b));
}

// str.split / str.rsplit.
List py_split(const std::string& s, const Value* sep, int64_t maxsplit, bool from_right) {
  List out;
  if (!sep || sep->k == K::None) {
    std::u32string u = decode(s);
    std::vector<std::pair<size_t, size_t>> words;
    if (!from_right) {
      size_t j = 0;
      while (j < u.size()) {
        while (j < u.size() && py_space(u[j])) j++;
        if (j >= u.size()) break;
        if (maxsplit >= 0 && int64_t(words.size()) == maxsplit) {
          words.emplace_back(j, u.size());  // the rest keeps its trailing whitespace
          break;
        }
        size_t k = j;
        while (k < u.size() && !py_space(u[k])) k++;
        words.emplace_back(j, k);
        j = k;
      }
    } else {
      size_t j = u.size();
      while (j > 0) {
        while (j > 0 && py_space(u[j - 1])) j--;
        if (j == 0) break;
        if (maxsplit >= 0 && int64_t(words.size()) == maxsplit) {
          words.emplace_back(0, j);  // the rest keeps its leading whitespace
          break;
        }
        size_t k = j;
        while (k > 0 && !py_space(u[k - 1])) k--;
        words.emplace_back(k, j);
        j = k;
      }
      std::reverse(words.begin(), words.end());
    }
    for (auto [b, e] : words) out.push_back(Value::str(encode(u.substr(b, e - b))));
    return out;
  }
  if (sep->k != K::Str) render_error(fmt::format("must be str or None, not {}", type_name(*sep)));
  if (sep->s.empty()) render_error("empty separator");
  const std::string& d = sep->s;
  std::vector<std::string> parts;
  if (!from_right) {
    size_t j = 0;
    while (true) {
      const size_t k = (maxsplit >= 0 && int64_t(parts.size()) >= maxsplit) ? std::string::npos : s.find(d, j);
      if (k == std::string::npos) {
        parts.push_back(s.substr(j));
        break;
      }
      parts.push_back(s.substr(j, k - j));
      j = k + d.size();
    }
  } else {
    size_t e = s.size();
    while (true) {
      size_t k = std::string::npos;
      if (!(maxsplit >= 0 && int64_t(parts.size()) >= maxsplit) && e >= d.size()) k = s.rfind(d, e - d.size());
      if (k == std::string::npos) {
        parts.push_back(s.substr(0, e));
        break;
      }
      parts.push_back(s.substr(k + d.size(), e - k - d.size()));
      e = k;
    }
    std::reverse(parts.begin(), parts.end());
  }
  for (auto& p : parts) out.push_back(Value::str(std::move(p)));
  return out;
}

std::string py_replace(const std::string& s, const std::string& old, const std::string& with, int64_t count,
                       size_t max_size) {
  auto grown = [&](const std::string& out) {
    if (out.size() > max_size) throw_error(EKind::Limit, fmt::format("a string of more than {} bytes", max_size));
  };
  std::string out;
  if (old.empty()) {
    // Inserts `with` around every character.
    std::u32string u = decode(s);
    int64_t n = 0;
    for (size_t j = 0; j <= u.size(); j++) {
      if (count < 0 || n < count) {
        out += with;
        grown(out);
        n++;
      }
      if (j < u.size()) append_utf8(out, u[j]);
    }
    return out;
  }
  size_t j = 0;
  int64_t n = 0;
  while (count < 0 || n < count) {
    const size_t k = s.find(old, j);
    if (k == std::string::npos) break;
    out.append(s, j, k - j);
    out += with;
    grown(out);
    j = k + old.size();
    n++;
  }
  out.append(s, j, std::string::npos);
  return out;
}

std::vector<std::string> py_splitlines(const std::string& s, bool keepends) {
  std::u32string u = decode(s);
  std::vector<std::string> out;
  size_t b = 0;
  for (size_t j = 0; j < u.size(); j++) {
    if (!py_line_break(u[j])) continue;
    size_t e = j + 1;
    if (u[j] == '\r' && e < u.size() && u[e] == '\n') e++;
    out.push_back(encode(u.substr(b, (keepends ? e : j) - b)));
    b = e;
    j = e - 1;
  }
  if (b < u.size()) out.push_back(encode(u.substr(b)));
  return out;
}

std::string py_pad(const std::string& s, int64_t width, const std::string& fill, char align) {
  const int64_t len = int64_t(decode(s).size());
  if (width <= len) return s;
  const int64_t total = width - len;
  // CPython's split of the padding for center().
  const int64_t left = align == '<' ? 0 : align == '>' ? total : total / 2 + (total & width & 1);
  std::string out;
  for (int64_t j = 0; j < left; j++) out += fill;
  out += s;
  for (int64_t j = 0; j < total - left; j++) out += fill;
  return out;
}

// The Python int() of a string; nullopt where Python raises ValueError.
std::optional<int64_t> parse_py_int(const std::string& text, int base) {
  std::string t = py_strip(text, nullptr, true, true);
  bool neg = false;
  size_t j = 0;
  if (j < t.size() && (t[j] == '+' || t[j] == '-')) neg = t[j++] == '-';
  if (base == 0 || base == 16 || base == 8 || base == 2) {
    if (j + 1 < t.size() && t[j] == '0') {
      const char x = char(t[j + 1] | 32);
      if ((x == 'x' && (base == 16 || base == 0)) || (x == 'o' && (base == 8 || base == 0)) ||
          (x == 'b' && (base == 2 || base == 0))) {
        base = x == 'x' ? 16 : x == 'o' ? 8 : 2;
        j += 2;
        if (j < t.size() && t[j] == '_') j++;
      }
    }
    if (base == 0) base = 10;
  }
  if (j >= t.size()) return std::nullopt;
  int64_t v = 0;
  bool prev_digit = false;
  for (; j < t.size(); j++) {
    const char c = t[j];
    if (c == '_') {
      if (!prev_digit || j + 1 >= t.size() || t[j + 1] == '_') return std::nullopt;
      prev_digit = false;
      continue;
    }
    int d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
            : std::isalpha(static_cast<unsigned char>(c)) ? (c | 32) - 'a' + 10
                                                          : 99;
    if (d >= base) return std::nullopt;
    if (__builtin_mul_overflow(v, int64_t(base), &v) || __builtin_add_overflow(v, int64_t(d), &v))
      unsupported("integers beyond 64 bits");
    prev_digit = true;
  }
  return neg ? -v : v;
}

// Python's float() of a string; nullopt where it raises ValueError.
std::optional<double> parse_py_float(const std::string& text) {
  std::string t = py_strip(text, nullptr, true, true);
  std::string lower = str_lower(t);
  std::string body = lower;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) body = body.substr(1);
  if (body == "inf" || body == "infinity") return lower[0] == '-' ? -HUGE_VAL : HUGE_VAL;
  if (body == "nan") return NAN;
  if (t.empty() || t.find_first_not_of("0123456789+-.eE_") != std::string::npos) return std::nullopt;
  if (t.find('_') != std::string::npos) unsupported("float() of a string with underscores");
  char* end = nullptr;
  const double d = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size()) return std::nullopt;
  return d;
}

}  // namespace

Value Interp::apply_filters(const Expr& f, const Value& base, const ScopeP& sc) {
  // A filter chain's innermost node holds the input (null in {% filter %} and block sets).
  Value input = f.a ? (f.a->k == EK::Filter ? apply_filters(*f.a, base, sc) : eval(*f.a, sc)) : base;
  Args args = eval_args(f, sc);
  step();
  return with_line(f.line, [&] { return filter(f.name, input, args); });
}

Value Interp::attr_path(const Value& v, const std::string& attribute) {
  Value cur = v;
  size_t b = 0;
  while (true) {
    const size_t e = attribute.find('.', b);
    const std::string part = attribute.substr(b, e == std::string::npos ? std::string::npos : e - b);
    const bool digits = !part.empty() && part.find_first_not_of("0123456789") == std::string::npos;
    // A number past int64 indexes nothing, as Python's huge index finds nothing.
    cur = !digits              ? get_item(cur, Value::str(part))
          : part.size() > 18 ? Value::undefined("index " + part + " is out of range")
                               : get_item(cur, Value::integer(std::stoll(part)));
    if (e == std::string::npos) return cur;
    b = e + 1;
  }
}

List Interp::sorted(List items, bool reverse, bool case_sensitive, const std::string& attribute, bool by_value) {
  std::vector<std::pair<Value, size_t>> keyed;
  for (size_t j = 0; j < items.size(); j++) {
    Value key = items[j];
    if (by_value) key = (*key.list)[1];
    if (!attribute.empty()) key = attr_path(key, attribute);
    if (!case_sensitive && key.k == K::Str) key = Value::str(str_lower(key.s));
    keyed.emplace_back(std::move(key), j);
  }
  copies(keyed.size());
  // Python's sort is stable; reverse=True keeps equal items in their order.
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? py_lt(y.first, x.first) : py_lt(x.first, y.first);
  });
  List out;
  for (auto& [k, j] : keyed) out.push_back(items[j]);
  return out;
}

Value Interp::filter(const std::string& name, const Value& v, Args& a) {
  auto str_in = [&]() { return soft_str(v); };
  if (name == "trim") {
    auto b = bind("trim", a, {"chars"});
    const Value s = str_in();
    return make_str(py_strip(s.s, b[0] ? &*b[0] : nullptr, true, true), s.markup);
  }
  if (name == "length" || name == "count") {
    bind(name, a, {});
    return Value::integer(int64_t(py_len(v)));
  }
  if (name == "tojson") {
    auto b = bind("tojson", a, {"ensure_ascii", "indent", "separators", "sort_keys"});
    JsonStyle st;
    st.ensure_ascii = b[0] && truthy(*b[0]);
    if (b[1] && b[1]->k != K::None) {
      st.indent = true;
      if (b[1]->is_int()) {
        st.indent_str = std::string(size_t(std::max<int64_t>(width(b[1]->i), 0)), ' ');
      } else if (b[1]->k == K::Str) {
        st.indent_str = b[1]->s;
      } else {
        render_error("tojson: indent must be an integer or a string");
      }
      st.item_sep = ",";
    }
    if (b[2] && b[2]->k != K::None) {
      if (!b[2]->is_plain_list() || b[2]->list->size() != 2 || (*b[2]->list)[0].k != K::Str ||
          (*b[2]->list)[1].k != K::Str)
        render_error("tojson: separators must be a pair of strings");
      st.item_sep = (*b[2]->list)[0].s;
      st.key_sep = (*b[2]->list)[1].s;
    }
    st.sort_keys = b[3] && truthy(*b[3]);
    std::string out;
    to_json(out, v, st, 0, 0);
    return make_str(std::move(out));
  }
  if (name == "upper" || name == "lower" || name == "capitalize" || name == "title") {
    bind(name, a, {});
    const Value s = str_in();
    if (name == "upper") return make_str(str_upper(s.s), s.markup);
    if (name == "lower") return make_str(str_lower(s.s), s.markup);
    if (name == "capitalize") return make_str(str_capitalize(s.s), s.markup);
    // Jinja2's title: the text cut before and after runs of - space ( { [ <,
    // each piece's first character upper()ed and the rest lower()ed.
    const std::u32string u = decode(s.s);
    auto sep = [](char32_t c) { return c == '-' || py_space(c) || c == '(' || c == '{' || c == '[' || c == '<'; };
    std::string out;
    for (size_t i = 0; i < u.size();) {
      size_t j = i;
      const bool is_sep = sep(u[i]);
      while (j < u.size() && sep(u[j]) == is_sep) j++;
      if (is_sep) {
        out += encode(u.substr(i, j - i));
      } else {
        out += str_upper(encode(u.substr(i, 1)));
        out += str_lower(encode(u.substr(i + 1, j - i - 1)));
      }
      i = j;
    }
    return make_str(std::move(out), s.markup);
  }
  if (name == "default" || name == "d") {
    auto b = bind(name, a, {"default_value", "boolean"});
    const bool boolean = b[1] && truthy(*b[1]);
    if (v.is_undef() || (boolean && !truthy(v))) return b[0] ? *b[0] : Value::str("");
    return v;
  }
  if (name == "join") {
    auto b = bind("join", a, {"d", "attribute"});
    const std::string sep = b[0] ? py_str(*b[0]) : "";
    std::string out;
    bool first = true;
    for (const auto& x : iterate(v)) {
      if (!first) out += sep;
      first = false;
      out += py_str(b[1] && b[1]->k != K::None ? attr_path(x, py_str(*b[1])) : x);
      grown(out);
    }
    return make_str(std::move(out));
  }
  if (name == "first") {
    bind("first", a, {});
    List items = iterate(v);
    return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
  }
  if (name == "last") {
    bind("last", a, {});
    if (v.k == K::List && v.view == Value::View::Gen) render_error("'generator' object is not reversible");
    if (v.k != K::List && v.k != K::Str && v.k != K::Dict && v.k != K::Undef)
      render_error(fmt::format("'{}' object is not reversible", type_name(v)));
    if (v.k == K::Undef) undefined_error(v);
    List items = iterate(v);
    return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
  }
  if (name == "list") {
    bind("list", a, {});
    return Value::make_list(iterate(v));
  }
  if (name == "items") {
    bind("items", a, {});
    if (v.is_undef()) return make_gen({});
    if (v.k != K::Dict) render_error("Can only get item pairs from a mapping.");
    List out;
    for (const auto& [k, x] : v.dict->items) out.push_back(Value::make_list({k, x}, true));
    return make_gen(std::move(out));
  }
  if (name == "dictsort") {
    auto b = bind("dictsort", a, {"case_sensitive", "by", "reverse"});
    if (v.is_undef()) undefined_error(v);
    if (v.k != K::Dict) render_error(fmt::format("'{}' object has no attribute 'items'", type_name(v)));
    const std::string by = b[1] ? py_str(*b[1]) : "key";
    if (by != "key" && by != "value") render_error("You can only sort by either \"key\" or \"value\"");
    List pairs;
    for (const auto& [k, x] : v.dict->items) pairs.push_back(Value::make_list({k, x}, true));
    if (by == "key") {
      // Sort on the key alone: the pairs' own first items.
      List keyed = sorted(pairs, b[2] && truthy(*b[2]), b[0] && truthy(*b[0]), "0", false);
      return Value::make_list(std::move(keyed));
    }
    return Value::make_list(sorted(pairs, b[2] && truthy(*b[2]), b[0] && truthy(*b[0]), "", true));
  }
  if (name == "safe") {
    bind("safe", a, {});
    return Value::str(py_str(v), true);
  }
  if (name == "escape" || name == "e" || name == "forceescape") {
    bind(name, a, {});
    if (v.k == K::Str && v.markup && name != "forceescape") return v;
    return make_str(html_escape(py_str(v)), true);
  }
  if (name == "string") {
    bind("string", a, {});
    return v.k == K::Str ? v : make_str(py_str(v));
  }
  if (name == "int") {
    auto b = bind("int", a, {"default", "base"});
    const Value def = b[0] ? *b[0] : Value::integer(0);
    const int64_t base = int_arg(b[1], 10, "base");
    if (v.is_undef()) undefined_error(v);
    if (v.k == K::Str) {
      if (auto r = parse_py_int(v.s, int(base))) return Value::integer(*r);
      if (auto f = parse_py_float(v.s)) {
        if (!std::isfinite(*f)) render_error("cannot convert float infinity or NaN to integer");
        if (std::fabs(*f) >= 9.2e18) unsupported("integers beyond 64 bits");
        return Value::integer(int64_t(*f));
      }
      return def;
    }
    if (v.is_int()) return Value::integer(v.i);
    if (v.k == K::Float) {
      if (!std::isfinite(v.f)) render_error("cannot convert float infinity or NaN to integer");
      if (std::fabs(v.f) >= 9.2e18) unsupported("integers beyond 64 bits");
      return Value::integer(int64_t(v.f));
    }
    return def;
  }
  if (name == "float") {
    auto b = bind("float", a, {"default"});
    const Value def = b[0] ? *b[0] : Value::number(0.0);
    if (v.is_undef()) undefined_error(v);
    if (v.is_num()) return Value::number(v.as_double());
    if (v.k == K::Str) {
      if (auto f = parse_py_float(v.s)) return Value::number(*f);
    }
    return def;
  }
  if (name == "abs") {
    bind("abs", a, {});
    if (v.is_undef()) undefined_error(v);
    if (v.is_int()) {
      if (v.i == INT64_MIN) unsupported("integers beyond 64 bits");
      return Value::integer(std::llabs(v.i));
    }
    if (v.k == K::Float) return Value::number(std::fabs(v.f));
    render_error(fmt::format("bad operand type for abs(): '{}'", type_name(v)));
  }
  if (name == "round") {
    auto b = bind("round", a, {"precision", "method"});
    const int64_t precision = int_arg(b[0], 0, "precision");
    const std::string method = b[1] ? py_str(*b[1]) : "common";
    if (method != "common" && method != "ceil" && method != "floor")
      render_error("method must be common, ceil or floor");
    if (v.is_undef()) undefined_error(v);
    if (!v.is_num()) render_error(fmt::format("type {} doesn't define __round__ method", type_name(v)));
    if (method == "common" && v.is_int() && precision >= 0) return Value::integer(v.i);
    const double scale = std::pow(10.0, double(precision));
    double r;
    if (method == "ceil") {
      r = std::ceil(v.as_double() * scale) / scale;
    } else if (method == "floor") {
      r = std::floor(v.as_double() * scale) / scale;
    } else {
      // round() is correctly rounded, half to even, on the decimal value.
      if (precision < 0 || precision > 300) unsupported("round() with this precision");
      const std::string txt = fmt::format("{:.{}f}", v.as_double(), precision);
      r = std::strtod(txt.c_str(), nullptr);
    }
    return Value::number(r);
  }
  if (name == "replace") {
    auto b = bind("replace", a, {"old", "new", "count"});
    if (!b[0] || !b[1]) render_error("replace() missing required arguments");
    return make_str(py_replace(py_str(v), py_str(*b[0]), py_str(*b[1]), int_arg(b[2], -1, "count"), opt.max_output_bytes));
  }
  if (name == "center") {
    auto b = bind("center", a, {"width"});
    return make_str(py_pad(py_str(v), width(int_arg(b[0], 80, "width")), " ", '^'));
  }
  if (name == "indent") {
    auto b = bind("indent", a, {"width", "first", "blank"});
    std::string ind;
    if (b[0] && b[0]->k == K::Str) {
      ind = b[0]->s;
    } else {
      ind = std::string(size_t(std::max<int64_t>(width(int_arg(b[0], 4, "width")), 0)), ' ');
    }
    const bool first = b[1] && truthy(*b[1]), blank = b[2] && truthy(*b[2]);
    if (v.is_undef()) undefined_error(v);  // do_indent adds "\n" to the value itself
    const std::string s = py_str(v) + "\n";
    std::vector<std::string> lines = py_splitlines(s, false);
    std::string out;
    if (blank) {
      for (size_t j = 0; j < lines.size(); j++) {
        out += (j ? "\n" + ind : "") + lines[j];
        grown(out);
      }
    } else {
      out = lines.empty() ? "" : lines[0];
      for (size_t j = 1; j < lines.size(); j++) {
        out += "\n" + (lines[j].empty() ? "" : ind) + lines[j];
        grown(out);
      }
    }
    if (first) out = ind + out;
    return make_str(std::move(out));
  }
  if (name == "wordcount") {
    bind("wordcount", a, {});
    int64_t n = 0;
    bool in_word = false;
    for (char32_t c : decode(py_str(v))) {
      const bool w = c == '_' || is_alpha(c) || is_digit(c);
      if (w && !in_word) n++;
      in_word = w;
    }
    return Value::integer(n);
  }
  if (name == "reverse") {
    bind("reverse", a, {});
    if (v.k == K::Str) {
      std::u32string u = decode(v.s);
      std::reverse(u.begin(), u.end());
      return make_str(encode(u), v.markup);
    }
    List items = iterate(v);
    std::reverse(items.begin(), items.end());
    return make_gen(std::move(items));
  }
  if (name == "unique") {
    auto b = bind("unique", a, {"case_sensitive", "attribute"});
    const bool cs = b[0] && truthy(*b[0]);
    const std::string attr = b[1] && b[1]->k != K::None ? py_str(*b[1]) : "";
    std::unordered_set<std::string> seen;
    List out;
    for (const auto& x : iterate(v)) {
      Value key = attr.empty() ? x : attr_path(x, attr);
      if (!cs && key.k == K::Str) key = Value::str(str_lower(key.s));
      if (seen.insert(hash_key(key)).second) out.push_back(x);
    }
    return make_gen(std::move(out));
  }
  if (name == "sort") {
    auto b = bind("sort", a, {"reverse", "case_sensitive", "attribute"});
    if (b[2] && b[2]->k == K::Str && b[2]->s.find(',') != std::string::npos)
      unsupported("sort on several attributes");
    const std::string attr = b[2] && b[2]->k != K::None ? py_str(*b[2]) : "";
    return Value::make_list(sorted(iterate(v), b[0] && truthy(*b[0]), b[1] && truthy(*b[1]), attr, false));
  }
  if (name == "min" || name == "max") {
    auto b = bind(name, a, {"case_sensitive", "attribute"});
    const bool cs = b[0] && truthy(*b[0]);
    const std::string attr = b[1] && b[1]->k != K::None ? py_str(*b[1]) : "";
    List items = iterate(v);
    if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
    size_t best = 0;
    Value best_key;
    for (size_t j = 0; j < items.size(); j++) {
      Value key = attr.empty() ? items[j] : attr_path(items[j], attr);
      if (!cs && key.k == K::Str) key = Value::str(str_lower(key.s));
      if (j == 0 || (name == "min" ? py_lt(key, best_key) : py_lt(best_key, key))) {
        best = j;
        best_key = key;
      }
    }
    return items[best];
  }
  if (name == "sum") {
    auto b = bind("sum", a, {"attribute", "start"});
    const std::string attr = b[0] && b[0]->k != K::None ? py_str(*b[0]) : "";
    Value total = b[1] ? *b[1] : Value::integer(0);
    if (total.k == K::Str) render_error("sum() can't sum strings [use ''.join(seq) instead]");
    for (const auto& x : iterate(v)) total = binop("+", total, attr.empty() ? x : attr_path(x, attr));
    return total;
  }
  if (name == "map") {
    List out;
    bool by_attr = a.pos.empty();
    if (by_attr) {
      auto b = bind("map", a, {"attribute", "default"});
      if (!b[0]) render_error("map requires a filter argument");
      const std::string attr = py_str(*b[0]);
      for (const auto& x : iterate(v)) {
        Value r = attr_path(x, attr);
        if (r.is_undef() && b[1] && b[1]->k != K::None) r = *b[1];
        out.push_back(std::move(r));
      }
      return make_gen(std::move(out));
    }
    const std::string fname = str_arg(a.pos[0], "map's filter name");
    Args rest{std::vector<Value>(a.pos.begin() + 1, a.pos.end()), a.kw};
    for (const auto& x : iterate(v)) {
      Args copy = rest;
      out.push_back(filter(fname, x, copy));
    }
    return make_gen(std::move(out));
  }
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    const bool attr_form = name == "selectattr" || name == "rejectattr";
    const bool keep = name == "select" || name == "selectattr";
    size_t off = 0;
    std::string attr;
    if (attr_form) {
      if (a.pos.empty()) render_error("Missing parameter for attribute name");
      attr = py_str(a.pos[0]);
      off = 1;
    }
    std::string test;
    Args rest;
    if (a.pos.size() > off) {
      test = str_arg(a.pos[off], "the test name");
      rest.pos.assign(a.pos.begin() + long(off) + 1, a.pos.end());
      rest.kw = a.kw;
    }
    List out;
    if (truthy(v)) {
      for (const auto& x : iterate(v)) {
        const Value item = attr_form ? attr_path(x, attr) : x;
        Args copy = rest;
        const bool r = test.empty() ? truthy(item) : run_test(test, item, copy);
        if (r == keep) out.push_back(x);
      }
    }
    return make_gen(std::move(out));
  }
  if (name == "attr") {
    auto b = bind("attr", a, {"name"});
    if (!b[0]) render_error("attr() missing required argument 'name'");
    // Attributes only: a dict's keys are not its attributes (unlike `.name`).
    const std::string attr = py_str(*b[0]);
    if (v.k == K::Dict && !in_set(attr, kDictAttrs))
      return Value::undefined(fmt::format("'dict object' has no attribute '{}'", attr));
    return get_attr(v, attr);
  }
  if (name == "batch") {
    auto b = bind("batch", a, {"linecount", "fill_with"});
    const int64_t n = int_arg(b[0], 0, "linecount");
    if (n <= 0) render_error("batch: linecount must be positive");
    List out, cur;
    for (const auto& x : iterate(v)) {
      if (int64_t(cur.size()) == n) {
        out.push_back(Value::make_list(std::move(cur)));
        cur.clear();
      }
      cur.push_back(x);
    }
    if (!cur.empty()) {
      if (b[1] && b[1]->k != K::None)
        while (int64_t(cur.size()) < n) cur.push_back(*b[1]);
      out.push_back(Value::make_list(std::move(cur)));
    }
    return make_gen(std::move(out));
  }
  unsupported("the filter '" + name + "'");
}

bool Interp::run_test(const std::string& name, const Value& v, Args& a) {
  auto arg = [&](const char* what) -> Value {
    auto b = bind(name, a, {what});
    if (!b[0]) render_error(fmt::format("test '{}' needs an argument", name));
    return *b[0];
  };
  auto none = [&] { bind(name, a, {}); };
  if (name == "defined") return none(), !v.is_undef();
  if (name == "undefined") return none(), v.is_undef();
  if (name == "none") return none(), v.k == K::None;
  if (name == "boolean") return none(), v.k == K::Bool;
  if (name == "false") return none(), v.k == K::Bool && !v.i;
  if (name == "true") return none(), v.k == K::Bool && v.i;
  if (name == "integer") return none(), v.k == K::Int;
  if (name == "float") return none(), v.k == K::Float;
  if (name == "number") return none(), v.is_num();
  if (name == "string") return none(), v.k == K::Str;
  if (name == "mapping") return none(), v.k == K::Dict;
  if (name == "iterable") return none(), v.k == K::Undef || v.k == K::Str || v.k == K::List || v.k == K::Dict;
  if (name == "sequence")
    return none(), v.k == K::Str || v.is_plain_list() || v.view == Value::View::Range || v.k == K::Dict;
  if (name == "callable") return none(), v.k == K::Func;
  if (name == "escaped") return none(), v.k == K::Str && v.markup;
  if (name == "lower" || name == "upper") {
    none();
    // str.islower(): some lowercase character, and no uppercase or titlecase one (isupper alike).
    bool cased = false;
    for (char32_t c : decode(py_str(v))) {
      if ((name == "lower" ? is_upper(c) : is_lower(c)) || is_title(c)) return false;
      if (name == "lower" ? is_lower(c) : is_upper(c)) cased = true;
    }
    return cased;
  }
  if (name == "odd" || name == "even") {
    none();
    if (v.is_undef()) undefined_error(v);
    if (!v.is_int()) render_error(fmt::format("unsupported operand type(s) for %: '{}' and 'int'", type_name(v)));
    return (v.i % 2 != 0) == (name == "odd");
  }
  if (name == "divisibleby") {
    const Value n = arg("num");
    if (v.is_undef()) undefined_error(v);
    const Value r = binop("%", v, n);
    return !truthy(r);
  }
  if (name == "sameas") {
    const Value o = arg("other");
    if (v.k != o.k) return false;
    switch (v.k) {
      case K::None:
      case K::Undef: return true;
      case K::Bool: return v.i == o.i;
      case K::Int: return v.i == o.i && v.i >= -5 && v.i <= 256;  // CPython shares only small ints
      case K::List: return v.list == o.list;
      case K::Dict:
      case K::Ns:
      case K::Loop: return v.dict == o.dict;
      case K::Func: return v.fn == o.fn;
      default: unsupported("'sameas' on strings and floats");
    }
  }
  if (name == "in") return contains(arg("seq"), v);
  static const std::pair<const char*, const char*> kCmp[] = {
      {"==", "=="}, {"eq", "=="}, {"equalto", "=="}, {"!=", "!="}, {"ne", "!="}, {"<", "<"}, {"lt", "<"},
      {"lessthan", "<"}, {"<=", "<="}, {"le", "<="}, {">", ">"}, {"gt", ">"}, {"greaterthan", ">"}, {">=", ">="},
      {"ge", ">="}};
  for (const auto& [n, op] : kCmp)
    if (name == n) return compare(op, v, arg("other"));
  if (name == "filter" || name == "test") unsupported("the '" + name + "' test");
  unsupported("the test '" + name + "'");
}

Value Interp::str_format(const std::string& f, Args& a) {
  std::string out;
  size_t auto_idx = 0;
  bool used_auto = false, used_manual = false;
  for (size_t j = 0; j < f.size(); j++) {
    const char c = f[j];
    if (c == '}') {
      if (j + 1 < f.size() && f[j + 1] == '}') {
        out += '}';
        j++;
        continue;
      }
      render_error("Single '}' encountered in format string");
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (j + 1 < f.size() && f[j + 1] == '{') {
      out += '{';
      j++;
      continue;
    }
    const size_t close = f.find('}', j);
    if (close == std::string::npos) render_error("Single '{' encountered in format string");
    std::string field = f.substr(j + 1, close - j - 1);
    j = close;
    char conv = 0;
    if (field.find('{') != std::string::npos) unsupported("nested fields in str.format()");
    const size_t colon = field.find(':');
    if (colon != std::string::npos) {
      if (colon + 1 < field.size()) unsupported("format specifications in str.format()");
      field.resize(colon);
    }
    const size_t bang = field.find('!');
    if (bang != std::string::npos) {
      if (bang + 2 != field.size()) render_error("expected ':' after conversion specifier");
      conv = field[bang + 1];
      field.resize(bang);
    }
    if (field.find_first_of(".[") != std::string::npos) unsupported("attribute or index access in str.format() fields");
    Value v;
    if (field.empty()) {
      if (used_manual) render_error("cannot switch from manual field specification to automatic field numbering");
      used_auto = true;
      if (auto_idx >= a.pos.size()) render_error(fmt::format("Replacement index {} out of range for positional args tuple", auto_idx));
      v = a.pos[auto_idx++];
    } else if (field.find_first_not_of("0123456789") == std::string::npos) {
      if (used_auto) render_error("cannot switch from automatic field numbering to manual field specification");
      used_manual = true;
      const size_t idx = field.size() > 18 ? SIZE_MAX : std::stoul(field);
      if (idx >= a.pos.size())
        render_error(fmt::format("Replacement index {} out of range for positional args tuple", field));
      v = a.pos[idx];
    } else {
      auto it = std::find_if(a.kw.begin(), a.kw.end(), [&](const auto& kv) { return kv.first == field; });
      if (it == a.kw.end()) render_error("KeyError: '" + field + "'");
      v = it->second;
    }
    if (conv == 'r' || conv == 'a') {
      if (conv == 'a') unsupported("the !a conversion");
      out += py_repr(v);
    } else if (conv == 's' || conv == 0) {
      out += py_str(v);
    } else {
      render_error(fmt::format("Unknown conversion specifier {}", conv));
    }
  }
  return make_str(std::move(out));
}

Value Interp::str_method(const Value& obj, const std::string& name, Args& a) {
  const std::string& s = obj.s;
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    auto b = bind(name, a, {"chars"});
    return make_str(py_strip(s, b[0] ? &*b[0] : nullptr, name != "rstrip", name != "lstrip"), obj.markup);
  }
  if (name == "split" || name == "rsplit") {
    auto b = bind(name, a, {"sep", "maxsplit"});
    return Value::make_list(py_split(s, b[0] ? &*b[0] : nullptr, int_arg(b[1], -1, "maxsplit"), name == "rsplit"));
  }
  if (name == "startswith" || name == "endswith") {
    if (a.pos.size() > 1) unsupported("str." + name + "() with start or end positions");
    auto b = bind(name, a, {"prefix"});
    if (!b[0]) render_error(name + "() takes at least 1 argument (0 given)");
    List candidates;
    if (b[0]->k == K::Str) {
      candidates.push_back(*b[0]);
    } else if (b[0]->k == K::List && b[0]->tuple) {
      candidates = *b[0]->list;
    } else {
      render_error(fmt::format("{} first arg must be str or a tuple of str, not {}", name, type_name(*b[0])));
    }
    for (const auto& c : candidates) {
      if (c.k != K::Str) render_error(fmt::format("tuple for {} must only contain str, not {}", name, type_name(c)));
      if (name == "startswith" ? s.compare(0, c.s.size(), c.s) == 0
                               : s.size() >= c.s.size() && s.compare(s.size() - c.s.size(), c.s.size(), c.s) == 0)
        return Value::boolean(true);
    }
    return Value::boolean(false);
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize" || name == "swapcase") {
    bind(name, a, {});
    if (name == "upper") return make_str(str_upper(s), obj.markup);
    if (name == "lower") return make_str(str_lower(s), obj.markup);
    if (name == "title") return make_str(str_title(s), obj.markup);
    if (name == "capitalize") return make_str(str_capitalize(s), obj.markup);
    return make_str(str_swapcase(s), obj.markup);
  }
  if (name == "replace") {
    auto b = bind(name, a, {"old", "new", "count"});
    if (!b[0] || !b[1]) render_error("replace expected at least 2 arguments");
    return make_str(py_replace(s, str_arg(*b[0], "replace() argument 1"), str_arg(*b[1], "replace() argument 2"),
                               int_arg(b[2], -1, "count"), opt.max_output_bytes),
                    obj.markup);
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    if (a.pos.size() > 1) unsupported("str." + name + "() with start or end positions");
    auto b = bind(name, a, {"sub"});
    if (!b[0]) render_error(name + "() takes at least 1 argument (0 given)");
    const std::string sub = str_arg(*b[0], "the substring");
    if (name == "count") {
      if (sub.empty()) return Value::integer(int64_t(decode(s).size()) + 1);
      int64_t n = 0;
      for (size_t k = s.find(sub); k != std::string::npos; k = s.find(sub, k + sub.size())) n++;
      return Value::integer(n);
    }
    const size_t k = name[0] == 'r' ? s.rfind(sub) : s.find(sub);
    if (k == std::string::npos) {
      if (name == "index" || name == "rindex") render_error("substring not found");
      return Value::integer(-1);
    }
    return Value::integer(int64_t(decode(s.substr(0, k)).size()));
  }
  if (name == "join") {
    auto b = bind(name, a, {"iterable"});
    if (!b[0]) render_error("join() takes exactly one argument (0 given)");
    std::string out;
    size_t j = 0;
    for (const auto& x : iterate(*b[0])) {
      if (x.k != K::Str)
        render_error(fmt::format("sequence item {}: expected str instance, {} found", j, type_name(x)));
      if (j++) out += s;
      out += x.s;
      grown(out);
    }
    return make_str(std::move(out));
  }
  if (name == "format") return str_format(s, a);
  if (name == "splitlines") {
    auto b = bind(name, a, {"keepends"});
    List out;
    for (auto& line : py_splitlines(s, b[0] && truthy(*b[0]))) out.push_back(Value::str(std::move(line)));
    return Value::make_list(std::move(out));
  }
  if (name == "isdigit" || name == "isdecimal" || name == "isnumeric" || name == "isalpha" || name == "isalnum" ||
      name == "isspace" || name == "isupper" || name == "islower") {
    bind(name, a, {});
    const std::u32string u = decode(s);
    if (name == "isupper" || name == "islower") {
      Args none;
      return Value::boolean(run_test(name == "isupper" ? "upper" : "lower", obj, none));
    }
    if (u.empty()) return Value::boolean(false);
    for (char32_t c : u) {
      bool ok = name == "isspace" ? py_space(c)
                : name == "isalpha" ? is_alpha(c)
                : name == "isalnum" ? is_alpha(c) || is_digit(c)
                                    : is_digit(c);
      if (!ok) return Value::boolean(false);
    }
    return Value::boolean(true);
  }
  if (name == "zfill") {
    auto b = bind(name, a, {"width"});
    const int64_t w = width(int_arg(b[0], 0, "width"));
    std::u32string u = decode(s);
    if (int64_t(u.size()) >= w) return obj;
    size_t at = !u.empty() && (u[0] == '+' || u[0] == '-') ? 1 : 0;
    u.insert(at, std::u32string(size_t(w) - u.size(), U'0'));
    return make_str(encode(u));
  }
  if (name == "center" || name == "ljust" || name == "rjust") {
    auto b = bind(name, a, {"width", "fillchar"});
    const std::string fill = b[1] ? str_arg(*b[1], "the fill character") : " ";
    if (decode(fill).size() != 1) render_error("The fill character must be exactly one character long");
    const int64_t w = width(int_arg(b[0], 0, "width"));
    return make_str(py_pad(s, w, fill, name == "ljust" ? '<' : name == "rjust" ? '>' : '^'));
  }
  if (name == "removeprefix" || name == "removesuffix") {
    auto b = bind(name, a, {"affix"});
    if (!b[0]) render_error(name + "() takes exactly one argument (0 given)");
    const std::string x = str_arg(*b[0], name.c_str());
    if (name == "removeprefix" && s.compare(0, x.size(), x) == 0) return make_str(s.substr(x.size()));
    if (name == "removesuffix" && !x.empty() && s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0)
      return make_str(s.substr(0, s.size() - x.size()));
    return obj;
  }
  if (name == "partition" || name == "rpartition") {
    auto b = bind(name, a, {"sep"});
    if (!b[0]) render_error(name + "() takes exactly one argument (0 given)");
    const std::string sep = str_arg(*b[0], "the separator");
    if (sep.empty()) render_error("empty separator");
    const size_t k = name == "partition" ? s.find(sep) : s.rfind(sep);
    if (k == std::string::npos) {
      if (name == "partition") return Value::make_list({obj, Value::str(""), Value::str("")}, true);
      return Value::make_list({Value::str(""), Value::str(""), obj}, true);
    }
    return Value::make_list({Value::str(s.substr(0, k)), Value::str(sep), Value::str(s.substr(k + sep.size()))}, true);
  }
  unsupported("the string method " + name + "()");
}

Value Interp::call_method(const Value& obj, const std::string& name, Args& a) {
  step();
  switch (obj.k) {
    case K::Str: return str_method(obj, name, a);
    case K::Dict:
      if (in_set(name, kDictMutators))
        render_error(fmt::format("access to attribute '{}' of 'dict' object is unsafe.", name));
      if (name == "get") {
        auto b = bind("get", a, {"key", "default"});
        if (!b[0]) render_error("get expected at least 1 argument, got 0");
        const Value def = b[1] ? *b[1] : Value::none();
        if (const Value* v = obj.dict->find(*b[0])) return *v;
        return def;
      }
      if (name == "items" || name == "keys" || name == "values") {
        bind(name, a, {});
        List out;
        for (const auto& [k, v] : obj.dict->items) {
          if (name == "items") {
            out.push_back(Value::make_list({k, v}, true));
          } else {
            out.push_back(name == "keys" ? k : v);
          }
        }
        copies(out.size());
        Value v = Value::make_list(std::move(out));
        v.view = name == "items" ? Value::View::Items : name == "keys" ? Value::View::Keys : Value::View::Values;
        return v;
      }
      if (name == "copy") {
        bind(name, a, {});
        auto d = std::make_shared<Dict>(*obj.dict);
        return Value::make_dict(d);
      }
      unsupported("the dict method " + name + "()");
    case K::List:
      if (in_set(name, kListMutators))
        render_error(fmt::format("access to attribute '{}' of '{}' object is unsafe.", name, type_name(obj)));
      if (name == "index" || name == "count") {
        if (a.pos.size() > 1) unsupported("list." + name + "() with start or end positions");
        auto b = bind(name, a, {"value"});
        if (!b[0]) render_error(name + "() takes at least 1 argument (0 given)");
        int64_t n = 0;
        for (size_t j = 0; j < obj.list->size(); j++) {
          if (!py_eq((*obj.list)[j], *b[0])) continue;
          if (name == "index") return Value::integer(int64_t(j));
          n++;
        }
        if (name == "index") render_error(py_repr(*b[0]) + " is not in list");
        return Value::integer(n);
      }
      if (name == "copy") {
        bind(name, a, {});
        return Value::make_list(*obj.list);
      }
      unsupported("the list method " + name + "()");
    case K::Loop: {
      if (name == "cycle") {
        if (!a.kw.empty()) render_error("cycle() takes no keyword arguments");
        if (a.pos.empty()) render_error("no items for cycling given");
        const int64_t idx = obj.dict->find("index0")->i;
        return a.pos[size_t(idx) % a.pos.size()];
      }
      // changed(*values): true when the values differ from the last call's.
      const Value now = Value::make_list(a.pos, true);
      const Value* last = obj.dict->find("\x01changed");
      const bool changed = !last || !py_eq(*last, now);
      obj.dict->set("\x01changed", now);
      return Value::boolean(changed);
    }
    default: break;
  }
  render_error(fmt::format("'{}' object has no method '{}'", type_name(obj), name));
}


// ---------------------------------------------------------------------------
// Globals and the public API.

namespace {

Value py_dict_from_args(const std::string& fname, Args& a) {
  auto d = std::make_shared<Dict>();
  if (a.pos.size() > 1) render_error(fmt::format("{} expected at most 1 argument, got {}", fname, a.pos.size()));
  if (!a.pos.empty()) {
    const Value& src = a.pos[0];
    if (src.k == K::Dict || src.k == K::Ns) {
      for (const auto& [k, v] : src.dict->items) d->set(k, v);
    } else if (src.k == K::List) {
      for (const auto& pair : *src.list) {
        if (!pair.is_plain_list() || pair.list->size() != 2)
          render_error(fmt::format("{}: each item must be a pair", fname));
        d->set((*pair.list)[0], (*pair.list)[1]);
      }
    } else if (src.k != K::Undef) {
      render_error(fmt::format("'{}' object is not iterable", type_name(src)));
    }
  }
  for (const auto& [k, v] : a.kw) d->set(k, v);
  return Value::make_dict(d);
}

std::string format_time(const std::string& format, const std::tm& tm) {
  // datetime.strftime handles %f, %z and %Z itself; a naive time has no zone.
  std::string f;
  for (size_t j = 0; j < format.size(); j++) {
    if (format[j] == '%' && j + 1 < format.size()) {
      const char c = format[j + 1];
      if (c == 'f') {
        f += "000000";
        j++;
        continue;
      }
      if (c == 'z' || c == 'Z') {
        j++;
        continue;
      }
      f += format.substr(j, 2);
      j++;
      continue;
    }
    f += format[j];
  }
  if (f.empty()) return "";
  if (f.size() > 4096) throw_error(EKind::Limit, "a strftime format longer than 4096 bytes");
  std::vector<char> buf(f.size() * 8 + 256);
  // strftime returns 0 both for an empty result and for a full buffer.
  for (int tries = 0; tries < 6; tries++) {
    const size_t n = std::strftime(buf.data(), buf.size(), f.c_str(), &tm);
    if (n > 0) return std::string(buf.data(), n);
    buf.resize(buf.size() * 4);
  }
  return "";
}

ScopeP make_globals(const RenderOptions& opt) {
  auto g = std::make_shared<Scope>();
  g->vars["range"] = make_func("range", [](Interp& in, Args& a) {
    if (!a.kw.empty()) render_error("range() takes no keyword arguments");
    if (a.pos.empty() || a.pos.size() > 3)
      render_error(fmt::format("range expected at most 3 arguments, got {}", a.pos.size()));
    for (const auto& x : a.pos) {
      if (x.is_undef()) undefined_error(x);
      if (!x.is_int()) render_error(fmt::format("'{}' object cannot be interpreted as an integer", type_name(x)));
    }
    int64_t start = 0, stop, step = 1;
    if (a.pos.size() == 1) {
      stop = a.pos[0].i;
    } else {
      start = a.pos[0].i;
      stop = a.pos[1].i;
      if (a.pos.size() == 3) step = a.pos[2].i;
    }
    if (step == 0) render_error("range() arg 3 must not be zero");
    const long double count = step > 0 ? (stop > start ? ((long double)stop - start + step - 1) / step : 0)
                                       : (stop < start ? ((long double)start - stop - step - 1) / -step : 0);
    // The sandbox's safe_range.
    if (count > 100000) render_error("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    in.copies(size_t(count));
    List out;
    for (int64_t j = 0; j < int64_t(count); j++) out.push_back(Value::integer(start + j * step));
    Value v = Value::make_list(std::move(out));
    v.view = Value::View::Range;
    v.i = start;
    v.stop = stop;
    v.step = step;
    return v;
  });
  g->vars["namespace"] = make_func("namespace", [](Interp& in, Args& a) {
    Value v = py_dict_from_args("namespace", a);
    v.k = K::Ns;
    in.cycles.add(v.dict);
    return v;
  });
  g->vars["dict"] = make_func("dict", [](Interp&, Args& a) { return py_dict_from_args("dict", a); });
  g->vars["raise_exception"] = make_func("raise_exception", [](Interp&, Args& a) -> Value {
    auto b = bind("raise_exception", a, {"message"});
    throw_error(EKind::Raised, b[0] ? py_str(*b[0]) : "None");
  });
  std::optional<std::tm> now = opt.now;
  g->vars["strftime_now"] = make_func("strftime_now", [now](Interp& in, Args& a) {
    auto b = bind("strftime_now", a, {"format"});
    if (!b[0]) render_error("strftime_now() missing 1 required positional argument: 'format'");
    const std::string f = str_arg(*b[0], "strftime_now's format");
    std::tm tm{};
    if (now) {
      tm = *now;
    } else {
      const std::time_t t = std::time(nullptr);
      localtime_r(&t, &tm);
    }
    return in.make_str(format_time(f, tm));
  });
  for (const char* n : {"lipsum", "cycler", "joiner"}) {
    const std::string name = n;
    g->vars[name] = make_func(name, [name](Interp&, Args&) -> Value { unsupported("the global " + name + "()"); });
  }
  return g;
}

}  // namespace

TemplateError::TemplateError(Kind k, const std::string& d, int l)
    : Error(error_message(k, d, l)), kind(k), detail(d), line(l) {}

struct Template::Impl {
  Body body;
};

Template::Template(std::string_view source) : impl_(std::make_unique<Impl>()) {
  impl_->body = Parser(Lexer(source).run()).parse_template();
}
Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const Json& context, const RenderOptions& options) const {
  if (!context.is_object()) throw_error(EKind::Render, "the template's variables must be a JSON object");
  Interp in(options);
  ScopeP root = child_scope(make_globals(options));
  for (auto it = context.begin(); it != context.end(); ++it) root->vars[it.key()] = from_json(it.value());
  std::string out;
  in.exec(impl_->body, root, out);
  return out;
}

}  // namespace lmpress::jinja
