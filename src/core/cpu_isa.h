// The one place that knows the CPU. Features are detected once (x86-64:
// CPUID says what the CPU has, XGETBV what the OS saves: a CPU that lists
// AVX-512 or AMX under a hypervisor that does not enable its state must not
// run it; aarch64: the kernel's HWCAP bits, which it sets only for what it
// lets user space run), then capped by $LMPRESS_ISA or pin_cpu_isa(). Every
// kernel's dispatch asks cpu_isa(); nothing is assumed from the build machine.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lmpress {

struct CpuFeatures {
  bool avx2 = false;         // AVX2 with AVX, FMA, F16C, POPCNT and the YMM state
  bool avx_vnni = false;     // AVX-VNNI (VEX vpdpbusd), on top of avx2
  bool avx512 = false;       // AVX-512 F, VL, BW, DQ with the opmask/ZMM state, on top of avx2
  bool avx512_vnni = false;  // AVX512-VNNI, on top of avx512
  bool avx512_vbmi = false;  // AVX512_VBMI (byte permutes vpermb, vpermi2b), on top of avx512
  bool neon = false;         // aarch64 Advanced SIMD (every aarch64 CPU)
  bool dotprod = false;      // SDOT/UDOT (Armv8.2 DotProd, HWCAP_ASIMDDP), on top of neon
  bool i8mm = false;         // SMMLA/USDOT (Armv8.6 I8MM, HWCAP2_I8MM), on top of neon; no target needs it yet
};

// What this machine supports.
const CpuFeatures& cpu_detected();
// What the kernels may use: cpu_detected() capped by the pin. The first call
// applies $LMPRESS_ISA (an invalid value prints `error:` and exits 1; the
// command-line program checks it first with apply_cpu_isa_env()).
const CpuFeatures& cpu_isa();
// Bumped by every pin, so that a dispatcher that caches its choice (Highway's
// target) can tell the cap changed.
uint64_t cpu_isa_generation();

// Targets by name: "scalar" everywhere; on x86-64 "avx2", "avx-vnni",
// "avx512", "avx512-vnni", "avx512-vbmi" (with VNNI: Ice Lake, Zen 4 and
// later); on aarch64 "neon", "neon-dotprod". Each allows itself and what it
// builds on ("avx512-vnni": avx2, avx512 and avx512-vnni, not avx-vnni).
// "best" (or "") allows everything detected. Throws Error for an unknown
// target, another architecture's, or one this CPU lacks, listing those it has.
void pin_cpu_isa(const std::string& name);
// The names this CPU supports, "scalar" first.
std::vector<std::string> cpu_isa_names();
// The best name the current cap allows.
std::string cpu_isa_name();
// pin_cpu_isa($LMPRESS_ISA) when it is set; throws Error naming the variable.
void apply_cpu_isa_env();

}  // namespace lmpress
