#include "core/cpu_isa.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "core/error.h"
#include "kernels/qdot.h"
#include "test_util.h"

namespace lmpress {
namespace {

bool subset(const CpuFeatures& a, const CpuFeatures& b) {
  return (!a.avx2 || b.avx2) && (!a.avx_vnni || b.avx_vnni) && (!a.avx512 || b.avx512) &&
         (!a.avx512_vnni || b.avx512_vnni) && (!a.avx512_vbmi || b.avx512_vbmi) && (!a.neon || b.neon) &&
         (!a.dotprod || b.dotprod) && (!a.i8mm || b.i8mm);
}

// This architecture's targets past scalar, the other one's, and its name.
#if defined(__aarch64__)
const std::vector<std::string> kOwn = {"neon", "neon-dotprod"};
const std::vector<std::string> kOther = {"avx2", "avx-vnni", "avx512", "avx512-vnni", "avx512-vbmi"};
const std::string kOtherArch = "x86-64";
#else
const std::vector<std::string> kOwn = {"avx2", "avx-vnni", "avx512", "avx512-vnni", "avx512-vbmi"};
const std::vector<std::string> kOther = {"neon", "neon-dotprod"};
const std::string kOtherArch = "aarch64";
#endif

std::string pin_error(const std::string& name) {
  try {
    pin_cpu_isa(name);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CpuIsa, EachSupportedTargetCapsTheKernelsAndNothingElseIsAccepted) {
  const auto names = cpu_isa_names();
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.front(), "scalar");
#if defined(__aarch64__)
  EXPECT_TRUE(cpu_detected().neon) << "Advanced SIMD is part of AArch64";
  EXPECT_NE(std::find(names.begin(), names.end(), "neon"), names.end());
#endif
  std::set<QDotFn> q4_0_kernels;
  for (const auto& n : names) {
    pin_cpu_isa(n);
    EXPECT_EQ(cpu_isa_name(), n);
    EXPECT_TRUE(subset(cpu_isa(), cpu_detected())) << n;
    EXPECT_EQ(std::find(kOther.begin(), kOther.end(), n), kOther.end()) << "another architecture's target: " << n;
    // The kernels follow the cap: scalar references, or AVX2 / NEON ones.
    const bool simd = cpu_isa().avx2 || cpu_isa().neon;
    EXPECT_EQ(qdot_simd_active(), simd) << n;
    EXPECT_EQ(qdot(DType::Q4_0).fn == qdot_reference(DType::Q4_0).fn, !simd) << n;
    EXPECT_EQ(qdot_vnni_available(Vnni::avx), cpu_isa().avx_vnni) << n;
    EXPECT_EQ(qdot_vnni_available(Vnni::avx512), cpu_isa().avx512_vnni) << n;
#if defined(__x86_64__)
    EXPECT_EQ(qdot(DType::IQ3_XXS).fn == &simd_avx512_vbmi::dot_iq3_xxs_q8_K, cpu_isa().avx512_vbmi) << n;
#endif
    if (cpu_isa().neon) {
      EXPECT_EQ(std::string(qdot_target()), n);
    }
    q4_0_kernels.insert(qdot(DType::Q4_0).fn);
  }
#if defined(__aarch64__)
  EXPECT_EQ(q4_0_kernels.size(), names.size()) << "scalar, NEON and NEON+SDOT: one Q4_0 kernel each";
#endif
  pin_cpu_isa("scalar");
  EXPECT_FALSE(cpu_isa().avx2);
  EXPECT_EQ(std::string(qdot_target()), "scalar");
  const std::string unknown = pin_error("sse9");
  EXPECT_NE(unknown.find("unknown instruction-set target 'sse9'"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("this CPU has: scalar"), std::string::npos) << unknown;
  for (const auto& n : kOwn) {
    if (std::find(names.begin(), names.end(), n) == names.end()) {
      EXPECT_NE(pin_error(n).find("not supported by this CPU"), std::string::npos) << n;
    }
  }
  for (const auto& n : kOther) {
    const std::string e = pin_error(n);
    EXPECT_NE(e.find("'" + n + "' is for " + kOtherArch + ", not this CPU (it has: scalar"), std::string::npos) << e;
  }
  EXPECT_FALSE(cpu_isa().avx2 || cpu_isa().neon) << "a refused pin must leave the cap as it was";
  pin_cpu_isa("best");
  EXPECT_TRUE(subset(cpu_detected(), cpu_isa()) && subset(cpu_isa(), cpu_detected()));
  apply_cpu_isa_env();  // the rest of the suite runs under $LMPRESS_ISA, if given
}

TEST(CpuIsa, EnvironmentOverrideThroughTheCli) {
  auto r = test::run_cli("info " + test::shared_path("models/stories260K/stories260K.gguf"));
  ASSERT_EQ(r.status, 0) << r.out;
  for (const std::string bad : {"bogus", "avx512-vnni-pro"}) {
    r = test::run_cli("info " + test::shared_path("models/stories260K/stories260K.gguf"), "LMPRESS_ISA=" + bad);
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_NE(r.out.find("error: LMPRESS_ISA: unknown instruction-set target '" + bad + "'"), std::string::npos)
        << r.out;
  }
  // The other architecture's target names are refused as such, listing this CPU's.
  std::string listed;
  for (const auto& n : cpu_isa_names()) listed += n + ", ";
  r = test::run_cli("info " + test::shared_path("models/stories260K/stories260K.gguf"), "LMPRESS_ISA=" + kOther[0]);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("error: LMPRESS_ISA: instruction-set target '" + kOther[0] + "' is for " + kOtherArch +
                       ", not this CPU (it has: " + listed + "best)"),
            std::string::npos)
      << r.out;
  // The same perplexity on the scalar references as on the best kernels.
  const std::string ppl = "perplexity " + test::shared_path("models/stories260K/stories260K.gguf") + " -f " +
                          test::shared_path("data/wikitext-2/wiki.test.raw") + " -c 128 --chunks 4 --json";
  const auto best = test::run_cli(ppl), scalar = test::run_cli(ppl, "LMPRESS_ISA=scalar");
  ASSERT_EQ(best.status, 0) << best.out;
  ASSERT_EQ(scalar.status, 0) << scalar.out;
  const auto value = [](const std::string& out) {
    const auto at = out.find("\"ppl\": ");
    return at == std::string::npos ? -1.0 : std::stod(out.substr(at + 7));
  };
  EXPECT_NEAR(value(scalar.out), value(best.out), 1e-3 * value(best.out));
  EXPECT_GT(value(best.out), 1.0);
}

}  // namespace
}  // namespace lmpress
