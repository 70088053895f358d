#include "compress/convert.h"

#include <algorithm>

#include "compress/mix.h"
#include "core/error.h"
#include "model/export.h"

namespace lmpress {

std::string convert_model(const Model& m, const std::string& out_path, const ConvertRequest& r) {
  ExportOptions eo;
  if (!r.dtype.empty()) {
    static const char* kTypes[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"};
    if (std::find(std::begin(kTypes), std::end(kTypes), r.dtype) == std::end(kTypes))
      fail("--dtype '{}': f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 or q5_1", r.dtype);
    eo.dtype = dtype_from_name(r.dtype);
    if (const auto preset = preset_for_base(*eo.dtype)) eo.file_type = preset->llama_ftype;
  }
  eo.name = r.name;
  std::string fmt = r.format;
  if (fmt.empty()) fmt = out_path.size() > 5 && out_path.compare(out_path.size() - 5, 5, ".gguf") == 0 ? "gguf" : "hf";
  if (fmt == "gguf")
    write_gguf_model(m, out_path, eo);
  else if (fmt == "hf")
    write_hf_model(m, out_path, eo);
  else
    fail("--format '{}': gguf or hf", fmt);
  return fmt;
}

}  // namespace lmpress
