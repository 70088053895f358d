// Hugging Face hub access: `lmpress pull ORG/NAME` downloads a repository's
// model files into a local cache; model arguments may name a cached repo.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lmpress {

// $LMPRESS_CACHE, else $XDG_CACHE_HOME/lmpress, else ~/.cache/lmpress.
std::string cache_dir();
// Where ORG/NAME at a revision lives in the cache.
std::string cached_repo_dir(const std::string& repo, const std::string& revision = "main");
// A path that exists is returned as is; ORG/NAME that is cached resolves to
// its cache directory; anything else is returned unchanged (and fails later
// with the file's own error).
std::string resolve_model_path(const std::string& arg);

struct PullOptions {
  std::string revision = "main";
  std::string endpoint;  // default $HF_ENDPOINT or https://huggingface.co
  std::string cache;     // default cache_dir()
  std::string token;     // default $HF_TOKEN
  bool quiet = false;
};

struct PulledFile {
  std::string name;
  uint64_t size = 0;
  bool downloaded = false;  // false: already complete in the cache
};

// Downloads config, tokenizer and safetensors files; resumes partial files;
// verifies size and (for LFS files) sha256. A cached file is kept when its size
// and (for LFS files) sha256 match the hub's, else downloaded again. Returns
// the local directory.
std::string pull(const std::string& repo, const PullOptions& opt, std::vector<PulledFile>* files = nullptr);

// Which files of a repo a model needs.
bool is_model_file(const std::string& name);

}  // namespace lmpress
