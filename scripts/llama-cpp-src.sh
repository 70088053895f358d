#!/usr/bin/env bash
# The llama.cpp peer's source checkout without building it, for tests that read
# its assets (models/templates/*.jinja): the same source bundle and cache as
# ../shared/tools/build-llama-cpp.sh (which builds in this checkout when a test
# needs the programs), in seconds instead of the build's minutes.
# Prints the checkout's path. Env: LLAMA_CPP_HOME, NODE_LLAMA_CPP_VERSION (as that script).
set -euo pipefail
VER="${NODE_LLAMA_CPP_VERSION:-3.22.1}"
HOME_DIR="${LLAMA_CPP_HOME:-$HOME/.cache/llama.cpp-peer}"
if [ ! -d "$HOME_DIR/src/.git" ]; then
  command -v npm >/dev/null || { echo "npm is required" >&2; exit 1; }
  mkdir -p "$HOME_DIR" && cd "$HOME_DIR"
  if [ ! -f bundle/gitRelease.bundle ]; then
    rm -rf pack bundle && mkdir -p pack bundle
    (cd pack && npm pack --silent "node-llama-cpp@$VER" >/dev/null)
    tar -xzf pack/node-llama-cpp-*.tgz -C bundle --strip-components=2 package/llama/gitRelease.bundle
  fi
  git clone -q bundle/gitRelease.bundle src >&2
fi
echo "$HOME_DIR/src"
