#!/usr/bin/env bash
# Installs every Debian package lmpress needs and builds it (Release) into build/.
# Usage: bash scripts/setup.sh        (run as root, or with sudo available)
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(build-essential cmake ninja-build pkg-config git
      libopenblas-openmp-dev liblapacke-dev libhwy-dev libcli11-dev nlohmann-json3-dev libfmt-dev
      libcpp-httplib-dev libgtest-dev libgmock-dev libbenchmark-dev libpcre2-dev libutf8proc-dev
      libcurl4-openssl-dev libssl-dev clang libclang-rt-14-dev python3-jinja2
      python3-requests curl pybind11-dev python3-pybind11 python3-pytest python3-pip python3-venv
      python3-setuptools python3-numpy python3-regex librsvg2-bin fonts-dejavu-core zlib1g-dev libyaml-cpp-dev)
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=()
# Installed for this machine's architecture (or as an architecture-independent
# package): scripts/test-aarch64.sh installs arm64 -dev packages beside these, and
# a -dev package that cannot be installed for two architectures at once
# (libyaml-cpp-dev) is then the arm64 one, which a plain `dpkg -s` accepts.
ARCH=$(dpkg --print-architecture)
installed() {
  dpkg-query -W -f='${db:Status-Abbrev}' "$1:$ARCH" 2>/dev/null | grep -q '^ii' ||
    dpkg-query -W -f='${db:Status-Abbrev}' "$1:all" 2>/dev/null | grep -q '^ii'
}
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p:$ARCH"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Node and npm for the OpenAI client test (any install that provides them: Debian's, or NodeSource's).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup: installing nodejs npm" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm curl >/dev/null
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
