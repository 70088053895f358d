#include "train/checkpoint.h"

#include <fstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/mapped_file.h"

namespace lmpress::train {

namespace {

void write_floats(const std::string& path, const std::vector<float>& v) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(float)));
  if (!f) fail("{}: cannot write", path);
}

std::vector<float> read_floats(const std::string& path, size_t n) {
  const auto file = MappedFile::open(path);
  if (file->size() != n * sizeof(float))
    fail("{}: {} bytes, the checkpoint's {} parameters need {}", path, file->size(), n, n * sizeof(float));
  std::vector<float> v(n);
  std::memcpy(v.data(), file->data(), n * sizeof(float));
  return v;
}

}  // namespace

void save_checkpoint(const std::string& dir, const nlohmann::json& setup, const Checkpoint& c) {
  AtomicDir out(dir, "state.json");
  write_floats(out.path() + "/weights.bin", c.w);
  write_floats(out.path() + "/adam_m.bin", c.m);
  write_floats(out.path() + "/adam_v.bin", c.v);
  nlohmann::json state{{"format", "lmpress finetune checkpoint"}, {"version", 1}, {"step", c.step},
                       {"parameters", c.w.size()}, {"setup", setup}};
  write_file_atomic(out.path() + "/state.json", state.dump(1) + "\n");
  out.commit();
}

Checkpoint load_checkpoint(const std::string& dir, const nlohmann::json& setup, size_t parameters) {
  const auto state = nlohmann::json::parse(read_text_file(dir + "/state.json"), nullptr, false);
  if (state.is_discarded() || !state.is_object() || !state.contains("format") ||
      state["format"] != "lmpress finetune checkpoint")
    fail("--resume {}: not a finetune checkpoint (state.json)", dir);
  for (const char* key : {"setup", "step", "parameters"})
    if (!state.contains(key)) fail("--resume {}: state.json lacks {}", dir, key);
  if (!state["setup"].is_object() || !state["step"].is_number_integer() || !state["parameters"].is_number_unsigned())
    fail("--resume {}: state.json's setup, step or parameters has the wrong type", dir);
  const auto& saved = state["setup"];
  for (const auto& [key, value] : setup.items()) {
    if (!saved.contains(key) || saved[key] != value)
      fail("--resume {}: the checkpoint was written with {} = {}, this run has {} (another model or setup)", dir, key,
           saved.contains(key) ? saved[key].dump() : "nothing", value.dump());
  }
  if (state["parameters"].get<uint64_t>() != parameters)
    fail("--resume {}: the checkpoint holds {} parameters, this run trains {}", dir, state["parameters"].get<uint64_t>(),
         parameters);
  Checkpoint c;
  c.step = state["step"].get<int64_t>();
  const size_t n = parameters;
  if (c.step < 0) fail("--resume {}: step {} is negative", dir, c.step);
  c.w = read_floats(dir + "/weights.bin", n);
  c.m = read_floats(dir + "/adam_m.bin", n);
  c.v = read_floats(dir + "/adam_v.bin", n);
  return c;
}

}  // namespace lmpress::train
