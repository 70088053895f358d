// Models with random weights in the exact shapes of real ones, so speed can be
// measured on realistic sizes that cannot be downloaded here. Weights are
// produced tensor by tensor while the file is written (a 1B model never sits
// in memory in f32); the vocabulary is a synthetic SentencePiece one of the
// real size (<unk>, <s>, </s>, 256 byte tokens, then made-up pieces).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/model.h"

namespace lmpress {

struct ModelShape {
  std::string name;  // "tinyllama-1.1b", ...
  ModelConfig cfg;
};

const std::vector<ModelShape>& model_shapes();
std::string model_shape_names();
// The named shape; fails listing the known ones.
ModelConfig find_model_shape(const std::string& name);

// A model of cfg's shapes whose tensors have no bytes (data == nullptr): their
// values come from random_tensor_values().
std::unique_ptr<Model> make_random_model(const ModelConfig& cfg, const std::string& name);

// Values of one tensor of a random model: norms 1, everything else normal
// with standard deviation 0.02, reproducible from (seed, tensor name, row)
// whatever the thread count.
std::vector<float> random_tensor_values(const Tensor& t, uint64_t seed);

}  // namespace lmpress
