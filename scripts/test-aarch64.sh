#!/usr/bin/env bash
# Cross-builds lmpress for 64-bit ARM Linux (aarch64) into build-aarch64/ and
# runs it under qemu-user: the kernel tests (every NEON target against the
# scalar references), lmp-8m's logits against the PyTorch reference, then the
# CLI itself on a Q4_0 model (NEON kernels against the scalar ones). Installs
# what it needs (Debian 12: the cross compiler, qemu-user and the arm64 -dev
# packages under multiarch). scripts/test.sh runs it (CI).
# Usage: bash scripts/test-aarch64.sh           (that subset: only its targets are built)
#        bash scripts/test-aarch64.sh --all     (everything, and the whole ctest suite under qemu)
# Run as root, or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."
ALL=0
case "${1:-}" in
  --all) ALL=1 ;;
  "") ;;
  *) echo "usage: $0 [--all]" >&2; exit 2 ;;
esac
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
t_start=$(date +%s)

# The arm64 libraries lmpress links (scripts/setup.sh's list, as arm64
# multiarch packages); the header-only ones and the tools are the host's.
# libyaml-cpp-dev cannot be installed for two architectures at once: the host's
# (headers, CMake files) stays, the build links arm64's libyaml-cpp0.7 (CMakeLists.txt).
HOST_PKGS=(cmake ninja-build pkg-config g++-aarch64-linux-gnu qemu-user nlohmann-json3-dev libcli11-dev libyaml-cpp-dev)
ARM_PKGS=(libopenblas-openmp-dev liblapacke-dev libhwy-dev libfmt-dev libpcre2-dev libutf8proc-dev libcurl4-openssl-dev libssl-dev
          libgtest-dev libgmock-dev libcpp-httplib-dev libyaml-cpp0.7 zlib1g-dev)
missing=()
for p in "${HOST_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
for p in "${ARM_PKGS[@]}"; do dpkg -s "$p:arm64" >/dev/null 2>&1 || missing+=("$p:arm64"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test-aarch64: installing ${missing[*]}" >&2
  dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cmake -S . -B build-aarch64 -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake >/dev/null
if [ "$ALL" = 1 ]; then
  cmake --build build-aarch64 -j"$(nproc)"
else
  cmake --build build-aarch64 -j"$(nproc)" --target lmpress lmpress_kernel_tests
fi
t_built=$(date +%s)
echo "test-aarch64: cross build $((t_built - t_start)) s"

# As scripts/test.sh: idle OpenMP threads sleep rather than spin while tests
# run side by side.
export OMP_WAIT_POLICY=PASSIVE LMPRESS_NO_PROGRESS=1
if [ "$ALL" = 1 ]; then
  (cd build-aarch64 && ctest --output-on-failure -j"$(nproc)")
else
  # lmpress_kernel_tests (CMakeLists.txt): NEON with and without SDOT against
  # the scalar references, the interleaved and sparse layouts' scalar kernels,
  # Highway's NEON GEMM, LMPRESS_ISA through the CLI, lmp-8m's logits against
  # PyTorch's. Left to --all, as they take minutes each under qemu: the
  # perplexities over 20-40 windows, attention against its textbook formula
  # (the scalar kernel both sides here) and DecodeKernels (3 models through the
  # CLI). Two shards side by side, one per core.
  export LMPRESS_CLI_EMULATOR=qemu-aarch64
  filter='-Perplexity.*:Attention.MatchesTextbookFormula:DecodeKernels.*'
  shards=$(nproc); pids=()
  for ((i = 0; i < shards; i++)); do
    GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i qemu-aarch64 build-aarch64/lmpress_kernel_tests \
      --gtest_filter="$filter" --gtest_brief=1 >"build-aarch64/kernel-tests-$i.log" 2>&1 &
    pids+=($!)
  done
  failed=0
  for ((i = 0; i < shards; i++)); do
    wait "${pids[$i]}" || { failed=1; cat "build-aarch64/kernel-tests-$i.log"; }
  done
  grep -h "tests* ran\|PASSED" build-aarch64/kernel-tests-*.log
  [ "$failed" = 0 ] || { echo "test-aarch64: kernel tests failed"; exit 1; }
  # qemu's default CPU has SDOT; an Armv8.0 one (Cortex-A53) has not: there
  # cpu_isa must not offer neon-dotprod, and the plain NEON kernels pass alone.
  QEMU_CPU=cortex-a53 qemu-aarch64 build-aarch64/lmpress_kernel_tests --gtest_filter='CpuIsa.*:QDot.*' --gtest_brief=1 |
    grep "tests* ran\|PASSED\|FAILED"
  if out=$(QEMU_CPU=cortex-a53 LMPRESS_ISA=neon-dotprod qemu-aarch64 build-aarch64/lmpress info \
             ../shared/models/stories260K/stories260K.gguf 2>&1) ||
     ! grep -q "'neon-dotprod' is not supported by this CPU (it has: scalar, neon, best)" <<<"$out"; then
    echo "test-aarch64: neon-dotprod on a CPU without SDOT: $out"; exit 1
  fi
fi
t_tested=$(date +%s)

# The CLI under qemu, outside the test binaries: lmp-8m as Q4_0 (prompts:
# Highway's NEON GEMM; decoding: the NEON Q4_0 dot), its perplexity on the
# NEON kernels and on the scalar references, which must agree, and a short
# greedy generation.
lmp() { qemu-aarch64 build-aarch64/lmpress "$@"; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
head -c 40000 ../shared/data/wikitext-2/wiki.test.raw >"$work/text.txt"
lmp convert ../shared/models/lmp-8m "$work/q4_0.gguf" --dtype q4_0 >/dev/null
ppl() { lmp perplexity "$work/q4_0.gguf" -f "$work/text.txt" --ctx 64 --chunks 4 --json |
          sed -n 's/.*"ppl": *\([0-9.eE+-]*\).*/\1/p'; }
best=$(ppl); scalar=$(LMPRESS_ISA=scalar ppl)
echo "test-aarch64: lmp-8m Q4_0 perplexity (ctx 64, 4 windows): $best on NEON, $scalar on the scalar kernels"
awk -v a="$best" -v b="$scalar" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 1 && d <= 1e-3 * b) }' ||
  { echo "test-aarch64: NEON and scalar perplexities differ"; exit 1; }
lmp generate "$work/q4_0.gguf" -p "The kernel scheduler" -n 16
t_end=$(date +%s)
echo "test-aarch64: tests $((t_tested - t_built)) s, CLI $((t_end - t_tested)) s, total $((t_end - t_start)) s"
echo "aarch64 tests passed"
