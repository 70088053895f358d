#include "io/gguf.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"

namespace lmpress {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxArrayDepth = 8;
constexpr uint32_t kMaxDims = 4;

// Bounded little-endian reader over the header; every read checks the end.
class Cursor {
 public:
  Cursor(const uint8_t* p, size_t n, const std::string& name) : p_(p), n_(n), name_(name) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return n_ - pos_; }
  const std::string& name() const { return name_; }

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    uint64_t len = read<uint64_t>(what);
    need(len, what);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), size_t(len));
    pos_ += size_t(len);
    return s;
  }
  void need(uint64_t k, const char* what) const {
    if (k > remaining())
      fail("{}: truncated GGUF: {} needs {} bytes at offset {}, {} left", name_, what, k, pos_, remaining());
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& name_;
};

size_t min_value_size(GGUFType t) {
  switch (t) {
    case GGUFType::UINT8: case GGUFType::INT8: case GGUFType::BOOL: return 1;
    case GGUFType::UINT16: case GGUFType::INT16: return 2;
    case GGUFType::UINT32: case GGUFType::INT32: case GGUFType::FLOAT32: return 4;
    case GGUFType::UINT64: case GGUFType::INT64: case GGUFType::FLOAT64: case GGUFType::STRING: return 8;
    case GGUFType::ARRAY: return 12;
  }
  return 1;
}

bool valid_type(uint32_t t) { return t <= uint32_t(GGUFType::FLOAT64); }

GGUFValue read_value(Cursor& c, GGUFType type, const std::string& key, int depth) {
  GGUFValue v;
  v.type = type;
  switch (type) {
    case GGUFType::UINT8: v.v = uint64_t(c.read<uint8_t>(key.c_str())); break;
    case GGUFType::INT8: v.v = int64_t(c.read<int8_t>(key.c_str())); break;
    case GGUFType::UINT16: v.v = uint64_t(c.read<uint16_t>(key.c_str())); break;
    case GGUFType::INT16: v.v = int64_t(c.read<int16_t>(key.c_str())); break;
    case GGUFType::UINT32: v.v = uint64_t(c.read<uint32_t>(key.c_str())); break;
    case GGUFType::INT32: v.v = int64_t(c.read<int32_t>(key.c_str())); break;
    case GGUFType::UINT64: v.v = c.read<uint64_t>(key.c_str()); break;
    case GGUFType::INT64: v.v = c.read<int64_t>(key.c_str()); break;
    case GGUFType::FLOAT32: v.v = double(c.read<float>(key.c_str())); break;
    case GGUFType::FLOAT64: v.v = c.read<double>(key.c_str()); break;
    case GGUFType::BOOL: {
      uint8_t b = c.read<uint8_t>(key.c_str());
      if (b > 1) fail("{}: metadata {}: bool value {} is not 0 or 1", c.name(), key, b);
      v.v = bool(b);
      break;
    }
    case GGUFType::STRING: v.v = c.read_string(key.c_str()); break;
    case GGUFType::ARRAY: {
      if (depth >= kMaxArrayDepth) fail("{}: metadata {}: arrays nested deeper than {}", c.name(), key, kMaxArrayDepth);
      uint32_t et = c.read<uint32_t>(key.c_str());
      if (!valid_type(et)) fail("{}: metadata {}: unknown array element type {}", c.name(), key, et);
      uint64_t n = c.read<uint64_t>(key.c_str());
      // Bound the count by the bytes left before allocating anything.
      if (n > c.remaining() / min_value_size(GGUFType(et)))
        fail("{}: metadata {}: array of {} elements exceeds the file size", c.name(), key, n);
      std::vector<GGUFValue> items;
      items.reserve(size_t(n));
      for (uint64_t i = 0; i < n; i++) items.push_back(read_value(c, GGUFType(et), key, depth + 1));
      v.elem_type = GGUFType(et);
      v.v = std::move(items);
      break;
    }
  }
  return v;
}

}  // namespace

const char* gguf_type_name(GGUFType t) {
  static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                "bool", "str", "arr", "u64", "i64", "f64"};
  return valid_type(uint32_t(t)) ? names[uint32_t(t)] : "?";
}

GGUFValue GGUFValue::array(GGUFType elem, std::vector<GGUFValue> items) {
  GGUFValue v;
  v.type = GGUFType::ARRAY;
  v.elem_type = elem;
  v.v = std::move(items);
  return v;
}
GGUFValue GGUFValue::str_array(const std::vector<std::string>& items) {
  std::vector<GGUFValue> vs;
  vs.reserve(items.size());
  for (const auto& s : items) vs.push_back(str(s));
  return array(GGUFType::STRING, std::move(vs));
}
GGUFValue GGUFValue::f32_array(const std::vector<float>& items) {
  std::vector<GGUFValue> vs;
  vs.reserve(items.size());
  for (float x : items) vs.push_back(f32(x));
  return array(GGUFType::FLOAT32, std::move(vs));
}
GGUFValue GGUFValue::i32_array(const std::vector<int32_t>& items) {
  std::vector<GGUFValue> vs;
  vs.reserve(items.size());
  for (int32_t x : items) vs.push_back(i32(x));
  return array(GGUFType::INT32, std::move(vs));
}

bool GGUFValue::is_int() const {
  return std::holds_alternative<uint64_t>(v) || std::holds_alternative<int64_t>(v);
}
int64_t GGUFValue::as_int() const {
  if (auto* u = std::get_if<uint64_t>(&v)) return int64_t(*u);
  if (auto* i = std::get_if<int64_t>(&v)) return *i;
  if (auto* b = std::get_if<bool>(&v)) return *b;
  fail("metadata value of type {} is not an integer", gguf_type_name(type));
}
double GGUFValue::as_double() const {
  if (auto* d = std::get_if<double>(&v)) return *d;
  return double(as_int());
}
const std::string& GGUFValue::as_string() const {
  if (auto* s = std::get_if<std::string>(&v)) return *s;
  fail("metadata value of type {} is not a string", gguf_type_name(type));
}
const std::vector<GGUFValue>& GGUFValue::as_array() const {
  if (auto* a = std::get_if<std::vector<GGUFValue>>(&v)) return *a;
  fail("metadata value of type {} is not an array", gguf_type_name(type));
}

std::string GGUFValue::to_display(size_t max_items) const {
  switch (type) {
    case GGUFType::STRING: {
      const auto& s = as_string();
      return s.size() > 60 ? fmt::format("\"{}...\"", s.substr(0, 60)) : fmt::format("\"{}\"", s);
    }
    case GGUFType::BOOL: return std::get<bool>(v) ? "true" : "false";
    case GGUFType::FLOAT32: case GGUFType::FLOAT64: return fmt::format("{:g}", as_double());
    case GGUFType::ARRAY: {
      const auto& a = as_array();
      std::string s = fmt::format("{}[{}] [", gguf_type_name(elem_type), a.size());
      for (size_t i = 0; i < a.size() && i < max_items; i++) s += (i ? ", " : "") + a[i].to_display(max_items);
      return s + (a.size() > max_items ? ", ...]" : "]");
    }
    default: return std::to_string(as_int());
  }
}

GGUFFile GGUFFile::open(const std::string& path) {
  auto f = MappedFile::open(path);
  return parse(f, f->data(), f->size(), path);
}

GGUFFile GGUFFile::parse(std::shared_ptr<MappedFile> file, const uint8_t* data, size_t size,
                         const std::string& name) {
  GGUFFile g;
  g.file_ = std::move(file);
  g.base_ = data;
  g.size_ = size;
  g.path = name;
  Cursor c(data, size, name);
  if (size < 4) fail("{}: not a GGUF file (only {} bytes)", name, size);
  uint32_t magic = c.read<uint32_t>("magic");
  if (magic != kMagic) fail("{}: not a GGUF file (bad magic 0x{:08x})", name, magic);
  g.version = c.read<uint32_t>("version");
  if (g.version == 1) fail("{}: GGUF v1 is not supported (only v2 and v3)", name);
  if (g.version != 2 && g.version != 3) {
    if ((g.version & 0xffff) == 0) fail("{}: big-endian GGUF is not supported", name);
    fail("{}: unsupported GGUF version {}", name, g.version);
  }
  uint64_t n_tensors = c.read<uint64_t>("tensor count");
  uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Each kv needs at least 12 bytes (key length + type) and each tensor info 28.
  if (n_kv > c.remaining() / 12) fail("{}: metadata count {} exceeds the file size", name, n_kv);
  std::set<std::string> keys;
  for (uint64_t i = 0; i < n_kv; i++) {
    std::string key = c.read_string("metadata key");
    uint32_t t = c.read<uint32_t>("metadata type");
    if (!valid_type(t)) fail("{}: metadata {}: unknown value type {}", name, key, t);
    GGUFValue v = read_value(c, GGUFType(t), key, 0);
    if (!keys.insert(key).second) fail("{}: duplicate metadata key {}", name, key);
    g.kv.emplace_back(std::move(key), std::move(v));
  }
  if (auto* a = g.find("general.alignment")) {
    if (!a->is_int()) fail("{}: general.alignment is not an integer", name);
    int64_t al = a->as_int();
    if (al <= 0 || (al & (al - 1)) != 0 || al > (1 << 20))
      fail("{}: general.alignment {} is not a power of two", name, al);
    g.alignment = uint64_t(al);
  }
  if (n_tensors > c.remaining() / 28) fail("{}: tensor count {} exceeds the file size", name, n_tensors);
  std::set<std::string> names;
  for (uint64_t i = 0; i < n_tensors; i++) {
    GGUFTensorInfo ti;
    ti.name = c.read_string("tensor name");
    uint32_t nd = c.read<uint32_t>("tensor n_dims");
    if (nd == 0 || nd > kMaxDims) fail("{}: tensor {}: n_dims {} is not in 1..{}", name, ti.name, nd, kMaxDims);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < nd; d++) {
      uint64_t ne = c.read<uint64_t>("tensor dim");
      if (ne == 0 || ne > uint64_t(INT64_MAX)) fail("{}: tensor {}: dimension {} is {}", name, ti.name, d, ne);
      if (__builtin_mul_overflow(numel, ne, &numel) || numel > uint64_t(INT64_MAX))
        fail("{}: tensor {}: element count overflows", name, ti.name);
      ti.ne.push_back(ne);
    }
    ti.ggml_type = c.read<uint32_t>("tensor type");
    ti.offset = c.read<uint64_t>("tensor offset");
    if (!names.insert(ti.name).second) fail("{}: duplicate tensor name {}", name, ti.name);
    g.tensor_infos.push_back(std::move(ti));
  }
  uint64_t pos = c.pos();
  g.data_offset = (pos + g.alignment - 1) / g.alignment * g.alignment;
  if (n_tensors > 0 && g.data_offset > size) fail("{}: truncated GGUF: data section starts past end of file", name);
  uint64_t data_size = size > g.data_offset ? size - g.data_offset : 0;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [offset, end) per tensor info
  for (const auto& ti : g.tensor_infos) {
    auto info = dtype_info(ti.ggml_type);
    if (!info) fail("{}: tensor {}: unknown ggml type {}", name, ti.name, ti.ggml_type);
    if (ti.ne[0] % info->block_elems != 0)
      fail("{}: tensor {}: row length {} is not a multiple of the {} block size {}", name, ti.name, ti.ne[0],
           info->name, info->block_elems);
    uint64_t numel = 1;
    for (auto ne : ti.ne) numel *= ne;
    uint64_t nbytes = checked_mul(numel / info->block_elems, info->block_bytes, ti.name.c_str());
    if (ti.offset % g.alignment != 0)
      fail("{}: tensor {}: offset {} is not aligned to {}", name, ti.name, ti.offset, g.alignment);
    if (ti.offset > data_size || nbytes > data_size - ti.offset)
      fail("{}: tensor {}: data [{}, +{}) lies past the end of the file (data section is {} bytes)", name,
           ti.name, ti.offset, nbytes, data_size);
    ranges.emplace_back(ti.offset, ti.offset + nbytes);
  }
  // Tensors sharing bytes would alias: writing one (or quantizing it) changes the other.
  std::vector<size_t> order(ranges.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  for (size_t k = 1; k < order.size(); k++) {
    const size_t a = order[k - 1], b = order[k];
    if (ranges[b].first < ranges[a].second)
      fail("{}: tensors {} [{}, {}) and {} [{}, {}) overlap in the data section", name, g.tensor_infos[a].name,
           ranges[a].first, ranges[a].second, g.tensor_infos[b].name, ranges[b].first, ranges[b].second);
  }
  return g;
}

const GGUFValue* GGUFFile::find(const std::string& key) const {
  for (const auto& [k, v] : kv)
    if (k == key) return &v;
  return nullptr;
}

std::optional<int64_t> GGUFFile::get_int(const std::string& key) const {
  auto* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_int()) fail("{}: metadata {} should be an integer, is {}", path, key, gguf_type_name(v->type));
  return v->as_int();
}
std::optional<double> GGUFFile::get_float(const std::string& key) const {
  auto* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_number()) fail("{}: metadata {} should be a number, is {}", path, key, gguf_type_name(v->type));
  return v->as_double();
}
std::optional<std::string> GGUFFile::get_string(const std::string& key) const {
  auto* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GGUFType::STRING) fail("{}: metadata {} should be a string, is {}", path, key, gguf_type_name(v->type));
  return v->as_string();
}
std::optional<bool> GGUFFile::get_bool(const std::string& key) const {
  auto* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GGUFType::BOOL) fail("{}: metadata {} should be a bool, is {}", path, key, gguf_type_name(v->type));
  return std::get<bool>(v->v);
}
int64_t GGUFFile::req_int(const std::string& key) const {
  auto v = get_int(key);
  if (!v) fail("{}: missing metadata {}", path, key);
  return *v;
}
std::string GGUFFile::req_string(const std::string& key) const {
  auto v = get_string(key);
  if (!v) fail("{}: missing metadata {}", path, key);
  return *v;
}

std::vector<Tensor> GGUFFile::tensors() const {
  std::vector<Tensor> out;
  for (const auto& ti : tensor_infos) {
    auto info = *dtype_info(ti.ggml_type);
    Tensor t;
    t.name = ti.name;
    t.dtype = info.type;
    for (auto it = ti.ne.rbegin(); it != ti.ne.rend(); ++it) t.shape.push_back(int64_t(*it));
    t.nbytes = uint64_t(t.numel()) / info.block_elems * info.block_bytes;
    t.data = base_ + data_offset + ti.offset;
    t.owner = file_;
    out.push_back(std::move(t));
  }
  return out;
}

// ---- writer ----

namespace {

struct Buf {
  std::string s;
  template <typename T>
  void put(T v) { s.append(reinterpret_cast<const char*>(&v), sizeof(T)); }
  void put_string(const std::string& x) {
    put<uint64_t>(x.size());
    s += x;
  }
};

void write_value(Buf& b, const GGUFValue& v) {
  switch (v.type) {
    case GGUFType::UINT8: b.put<uint8_t>(uint8_t(v.as_int())); break;
    case GGUFType::INT8: b.put<int8_t>(int8_t(v.as_int())); break;
    case GGUFType::UINT16: b.put<uint16_t>(uint16_t(v.as_int())); break;
    case GGUFType::INT16: b.put<int16_t>(int16_t(v.as_int())); break;
    case GGUFType::UINT32: b.put<uint32_t>(uint32_t(v.as_int())); break;
    case GGUFType::INT32: b.put<int32_t>(int32_t(v.as_int())); break;
    case GGUFType::UINT64: b.put<uint64_t>(uint64_t(v.as_int())); break;
    case GGUFType::INT64: b.put<int64_t>(v.as_int()); break;
    case GGUFType::FLOAT32: b.put<float>(float(v.as_double())); break;
    case GGUFType::FLOAT64: b.put<double>(v.as_double()); break;
    case GGUFType::BOOL: b.put<uint8_t>(std::get<bool>(v.v) ? 1 : 0); break;
    case GGUFType::STRING: b.put_string(v.as_string()); break;
    case GGUFType::ARRAY: {
      b.put<uint32_t>(uint32_t(v.elem_type));
      const auto& a = v.as_array();
      b.put<uint64_t>(a.size());
      for (const auto& x : a) {
        if (x.type != v.elem_type) fail("internal: GGUF array holds mixed element types");
        write_value(b, x);
      }
      break;
    }
  }
}

}  // namespace

void GGUFWriter::set(const std::string& key, GGUFValue v) {
  for (auto& [k, old] : kv_)
    if (k == key) {
      old = std::move(v);
      return;
    }
  kv_.emplace_back(key, std::move(v));
}

void GGUFWriter::add_tensor(const Tensor& t) { add_tensor(TensorToWrite{t, {}}); }

void GGUFWriter::add_tensor(TensorToWrite t) {
  for (const auto& x : tensors_)
    if (x.meta.name == t.meta.name) fail("internal: tensor {} added twice", t.meta.name);
  if (t.meta.shape.empty() || t.meta.shape.size() > kMaxDims) fail("tensor {}: GGUF needs 1..4 dims", t.meta.name);
  tensors_.push_back(std::move(t));
}

std::unique_ptr<TensorFileWriter> GGUFWriter::open(const std::string& path, uint64_t alignment) const {
  Buf b;
  b.put<uint32_t>(kMagic);
  b.put<uint32_t>(3);
  b.put<uint64_t>(tensors_.size());
  auto kv = kv_;
  bool has_align = false;
  for (auto& [k, v] : kv)
    if (k == "general.alignment") has_align = true;
  if (!has_align && alignment != 32) kv.emplace_back("general.alignment", GGUFValue::u32(uint32_t(alignment)));
  b.put<uint64_t>(kv.size());
  for (const auto& [k, v] : kv) {
    b.put_string(k);
    b.put<uint32_t>(uint32_t(v.type));
    write_value(b, v);
  }
  uint64_t off = 0;
  std::vector<uint64_t> offsets;
  std::vector<Tensor> metas;
  for (const auto& tw : tensors_) {
    const Tensor& t = tw.meta;
    b.put_string(t.name);
    b.put<uint32_t>(uint32_t(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) b.put<uint64_t>(uint64_t(*it));
    if (!dtype_info(uint32_t(t.dtype))) fail("{}: tensor {} is {}, which GGUF files cannot hold", path, t.name, dtype_name(t.dtype));
    b.put<uint32_t>(uint32_t(t.dtype));
    b.put<uint64_t>(off);
    offsets.push_back(off);
    off = (off + t.nbytes + alignment - 1) / alignment * alignment;
    Tensor m = t;
    m.data = nullptr;
    m.owner.reset();
    metas.push_back(std::move(m));
  }
  // The data section starts aligned, and the file ends aligned after the last tensor.
  b.s.append((alignment - b.s.size() % alignment) % alignment, '\0');
  const uint64_t data_start = b.s.size();
  for (auto& o : offsets) o += data_start;
  return std::make_unique<TensorFileWriter>(path, b.s, std::move(metas), std::move(offsets), data_start + off);
}

void GGUFWriter::write(const std::string& path, uint64_t alignment) const {
  const auto f = open(path, alignment);
  for (size_t i = 0; i < tensors_.size(); i++) f->write(i, tensors_[i]);
  f->commit();
}

}  // namespace lmpress
