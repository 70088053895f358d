#include "core/module_match.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace lmpress {
namespace {

// Python's re.match: anchored at the start, not at the end; Python syntax (named groups, (?i)).
TEST(ModuleMatch, RegexesMatchAsPythonReMatch) {
  const PyRegex r("model\\.layers\\.1", "t");
  EXPECT_TRUE(r.match("model.layers.1.mlp.up_proj"));
  EXPECT_TRUE(r.match("model.layers.12.mlp.up_proj"));  // re.match stops where the pattern does
  EXPECT_FALSE(r.match("x.model.layers.1"));
  EXPECT_TRUE(r.search("x.model.layers.1"));
  EXPECT_TRUE(PyRegex("(?P<l>\\d+)", "t").search("layers.3"));
  EXPECT_TRUE(PyRegex("(?i)MODEL", "t").match("model"));
  EXPECT_THROW(PyRegex("model.(layers", "quantize --targets"), std::runtime_error);
}

TEST(ModuleMatch, TargetsSelectLinearsByClassNameOrContainingModule) {
  const ModuleTarget cls("Linear", "t"), exact("model.layers.3.mlp", "t"), layer("re:model.layers.\\d*$", "t"),
      leaf("model.layers.3.mlp.up_proj", "t");
  const std::string up = "model.layers.3.mlp.up_proj";
  EXPECT_TRUE(cls.is_class() && cls.selects_linear(up));
  EXPECT_FALSE(cls.matches_name(up));
  EXPECT_TRUE(exact.selects_linear(up));
  EXPECT_FALSE(exact.selects_linear("model.layers.3.self_attn.q_proj"));
  EXPECT_FALSE(exact.selects_linear("model.layers.3.mlp_x.up_proj"));  // containing modules end at a dot
  EXPECT_TRUE(layer.selects_linear(up));  // model.layers.3 matches, up_proj's name does not
  EXPECT_FALSE(layer.matches_name(up));
  EXPECT_TRUE(leaf.selects_linear(up) && leaf.matches_name(up));
  EXPECT_FALSE(leaf.selects_linear("model.layers.3.mlp.up_proj2"));
}

TEST(ModuleMatch, IgnoreWinsOverTargets) {
  const auto s = module_selector({"re:model\\.layers\\.[01]\\."}, {"model.layers.1.mlp", "lm_head"}, "t", "i");
  EXPECT_FALSE(s.everything());
  EXPECT_TRUE(s.selects("model.layers.0.mlp.up_proj"));
  EXPECT_TRUE(s.selects("model.layers.1.self_attn.o_proj"));
  EXPECT_FALSE(s.selects("model.layers.1.mlp.up_proj"));
  EXPECT_FALSE(s.selects("model.layers.2.mlp.up_proj"));
  EXPECT_TRUE(module_selector({"Linear"}, {}, "t", "i").everything());
  EXPECT_TRUE(module_selector({}, {}, "t", "i").everything());
  EXPECT_THROW(module_selector({""}, {}, "t", "i"), std::runtime_error);
}

}  // namespace
}  // namespace lmpress
