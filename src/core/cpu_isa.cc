#include "core/cpu_isa.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#elif defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace lmpress {

namespace {

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27), avx = c & (1u << 28), fma = c & (1u << 12), f16c = c & (1u << 29),
             popcnt = c & (1u << 23);
  if (!(osxsave && avx && fma && f16c && popcnt)) return f;
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 6u) != 6u || __get_cpuid_max(0, nullptr) < 7) return f;  // XMM and YMM state
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = b & (1u << 5);
  if (!f.avx2) return f;
  const bool avx512f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31),
             vnni512 = c & (1u << 11), vbmi = c & (1u << 1);
  // Any EVEX instruction, 256-bit ones included, needs the opmask and ZMM state (XCR0 bits 5-7).
  f.avx512 = avx512f && dq && bw && vl && (lo & 0xE6u) == 0xE6u;
  f.avx512_vnni = f.avx512 && vnni512;
  f.avx512_vbmi = f.avx512 && vbmi;
  __cpuid_count(7, 1, a, b, c, d);
  f.avx_vnni = a & (1u << 4);
#elif defined(__aarch64__)
  // Advanced SIMD is mandatory in AArch64; the optional extensions are the
  // kernel's HWCAP bits (set only where user space may run them).
  f.neon = true;
  const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
  f.dotprod = hw & HWCAP_ASIMDDP;
#ifdef HWCAP2_I8MM
  f.i8mm = hw2 & HWCAP2_I8MM;
#else
  (void)hw2;
#endif
#endif
  return f;
}

enum class Arch { any, x86_64, aarch64 };
#if defined(__x86_64__)
constexpr Arch kArch = Arch::x86_64;
#elif defined(__aarch64__)
constexpr Arch kArch = Arch::aarch64;
#else
constexpr Arch kArch = Arch::any;
#endif

struct Target {
  const char* name;
  Arch arch;
  CpuFeatures allows;
};
// Each target's features; a CPU supports a target of its architecture when
// it has all of them. The other architecture's names are known so that a
// pin to one says so.
constexpr Target kTargets[] = {
    {"scalar", Arch::any, {}},
    {"avx2", Arch::x86_64, {.avx2 = true}},
    {"avx-vnni", Arch::x86_64, {.avx2 = true, .avx_vnni = true}},
    {"avx512", Arch::x86_64, {.avx2 = true, .avx512 = true}},
    {"avx512-vnni", Arch::x86_64, {.avx2 = true, .avx512 = true, .avx512_vnni = true}},
    {"avx512-vbmi", Arch::x86_64, {.avx2 = true, .avx512 = true, .avx512_vnni = true, .avx512_vbmi = true}},
    {"neon", Arch::aarch64, {.neon = true}},
    {"neon-dotprod", Arch::aarch64, {.neon = true, .dotprod = true}},
};

bool has(const CpuFeatures& cpu, const CpuFeatures& want) {
  return (!want.avx2 || cpu.avx2) && (!want.avx_vnni || cpu.avx_vnni) && (!want.avx512 || cpu.avx512) &&
         (!want.avx512_vnni || cpu.avx512_vnni) && (!want.avx512_vbmi || cpu.avx512_vbmi) && (!want.neon || cpu.neon) &&
         (!want.dotprod || cpu.dotprod) && (!want.i8mm || cpu.i8mm);
}

bool runs_here(const Target& t) { return (t.arch == Arch::any || t.arch == kArch) && has(cpu_detected(), t.allows); }

CpuFeatures g_cap;
std::atomic<uint64_t> g_generation{0};
std::atomic<bool> g_initialized{false};

void initialize() {
  if (g_initialized.load(std::memory_order_acquire)) return;
  static const bool once = [] {
    g_cap = cpu_detected();
    try {
      apply_cpu_isa_env();
    } catch (const Error& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      std::exit(1);
    }
    g_initialized.store(true, std::memory_order_release);
    return true;
  }();
  (void)once;
}

}  // namespace

const CpuFeatures& cpu_detected() {
  static const CpuFeatures f = detect();  // CPUID traps to the hypervisor on VMs: ask once
  return f;
}

const CpuFeatures& cpu_isa() {
  initialize();
  return g_cap;
}

uint64_t cpu_isa_generation() {
  initialize();
  return g_generation.load(std::memory_order_relaxed);
}

std::vector<std::string> cpu_isa_names() {
  std::vector<std::string> out;
  for (const Target& t : kTargets)
    if (runs_here(t)) out.push_back(t.name);
  return out;
}

void pin_cpu_isa(const std::string& name) {
  const CpuFeatures& cpu = cpu_detected();
  CpuFeatures cap;
  if (name.empty() || name == "best") {
    cap = cpu;
  } else {
    const Target* found = nullptr;
    for (const Target& t : kTargets)
      if (name == t.name) found = &t;
    std::string names;
    for (const auto& n : cpu_isa_names()) names += (names.empty() ? "" : ", ") + n;
    if (!found) fail("unknown instruction-set target '{}' (this CPU has: {}, best)", name, names);
    if (found->arch != Arch::any && found->arch != kArch)
      fail("instruction-set target '{}' is for {}, not this CPU (it has: {}, best)", name,
           found->arch == Arch::x86_64 ? "x86-64" : "aarch64", names);
    if (!has(cpu, found->allows)) fail("instruction-set target '{}' is not supported by this CPU (it has: {}, best)", name, names);
    cap = found->allows;
  }
  g_cap = cap;
  g_initialized.store(true, std::memory_order_release);
  g_generation.fetch_add(1, std::memory_order_relaxed);
}

std::string cpu_isa_name() {
  const CpuFeatures& cap = cpu_isa();
  std::string best = "scalar";
  for (const Target& t : kTargets)
    if (runs_here(t) && has(cap, t.allows)) best = t.name;
  return best;
}

void apply_cpu_isa_env() {
  const char* env = std::getenv("LMPRESS_ISA");
  if (!env) return;
  try {
    pin_cpu_isa(env);
  } catch (const Error& e) {
    fail("LMPRESS_ISA: {}", e.what());
  }
}

}  // namespace lmpress
