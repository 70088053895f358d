#include "io/hub.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/progress.h"

namespace lmpress {
namespace fs = std::filesystem;

std::string cache_dir() {
  if (const char* c = std::getenv("LMPRESS_CACHE"); c && *c) return c;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/lmpress";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.cache/lmpress";
}

namespace {

bool valid_part(const std::string& s) {
  if (s.empty() || s.size() > 96 || s == "." || s == "..") return false;
  for (char c : s)
    if (!(std::isalnum(uint8_t(c)) || c == '-' || c == '_' || c == '.')) return false;
  return true;
}

void check_repo(const std::string& repo) {
  auto slash = repo.find('/');
  if (slash == std::string::npos || !valid_part(repo.substr(0, slash)) || !valid_part(repo.substr(slash + 1)))
    fail("'{}' is not a hub repository name (ORG/NAME)", repo);
}

std::string repo_dir_in(const std::string& cache, const std::string& repo, const std::string& revision) {
  check_repo(repo);
  if (!valid_part(revision)) fail("'{}' is not a valid revision name", revision);
  auto slash = repo.find('/');
  return cache + "/models/" + repo.substr(0, slash) + "--" + repo.substr(slash + 1) + "/" + revision;
}

struct Curl {
  CURL* h;
  Curl() : h(curl_easy_init()) {
    if (!h) fail("cannot initialize libcurl");
  }
  ~Curl() { curl_easy_cleanup(h); }
};

size_t write_string(char* p, size_t sz, size_t n, void* ud) {
  static_cast<std::string*>(ud)->append(p, sz * n);
  return sz * n;
}
size_t write_file(char* p, size_t sz, size_t n, void* ud) {
  return std::fwrite(p, sz, n, static_cast<FILE*>(ud)) * sz;
}

void common_opts(CURL* h, const std::string& url, curl_slist* headers) {
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
  // Abort a stalled transfer (under 1 byte/s for 60 s) instead of hanging.
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "lmpress/" LMPRESS_VERSION);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
}

curl_slist* auth_headers(const std::string& token) {
  curl_slist* l = nullptr;
  if (!token.empty()) l = curl_slist_append(l, ("Authorization: Bearer " + token).c_str());
  return l;
}

std::string sha256_file(const std::string& path) {
  auto f = MappedFile::open(path);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, f->data(), f->size());
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  std::string hex;
  for (unsigned i = 0; i < len; i++) hex += fmt::format("{:02x}", md[i]);
  return hex;
}

uint64_t file_size(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? uint64_t(st.st_size) : 0;
}

struct Remote {
  std::string name;
  uint64_t size = 0;
  bool size_known = false;
  std::string sha256;  // LFS files only
};

int xfer_progress(void* ud, curl_off_t total, curl_off_t now, curl_off_t, curl_off_t) {
  auto* p = static_cast<std::pair<Progress*, uint64_t>*>(ud);
  if (p->first) p->first->update(p->second + uint64_t(now));
  (void)total;
  return 0;
}

void download(const std::string& url, const std::string& dest, const Remote& r, const PullOptions& opt) {
  const std::string part = dest + ".incomplete";
  uint64_t have = file_size(part);
  if (r.size_known && have > r.size) {
    std::remove(part.c_str());
    have = 0;
  }
  FILE* f = std::fopen(part.c_str(), have ? "ab" : "wb");
  if (!f) fail("{}: cannot write: {}", part, std::strerror(errno));
  Curl c;
  curl_slist* headers = auth_headers(opt.token);
  common_opts(c.h, url, headers);
  if (have) curl_easy_setopt(c.h, CURLOPT_RESUME_FROM_LARGE, curl_off_t(have));
  curl_easy_setopt(c.h, CURLOPT_WRITEFUNCTION, write_file);
  curl_easy_setopt(c.h, CURLOPT_WRITEDATA, f);
  std::unique_ptr<Progress> prog;
  if (!opt.quiet) prog = std::make_unique<Progress>(r.name, r.size);
  std::pair<Progress*, uint64_t> pd{prog.get(), have};
  curl_easy_setopt(c.h, CURLOPT_XFERINFOFUNCTION, xfer_progress);
  curl_easy_setopt(c.h, CURLOPT_XFERINFODATA, &pd);
  curl_easy_setopt(c.h, CURLOPT_NOPROGRESS, 0L);
  CURLcode rc = curl_easy_perform(c.h);
  long status = 0;
  curl_easy_getinfo(c.h, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  std::fclose(f);
  if (prog) prog->finish();
  if (rc != CURLE_OK) fail("{}: download failed: {} (partial file kept; run pull again to resume)", url, curl_easy_strerror(rc));
  if (status == 200 && have > 0) {
    // The server ignored the range: what we appended is the whole file again.
    std::remove(part.c_str());
    return download(url, dest, r, opt);
  }
  if (status != 200 && status != 206) {
    std::remove(part.c_str());
    fail("{}: HTTP {}", url, status);
  }
  uint64_t got = file_size(part);
  if (r.size_known && got != r.size) fail("{}: size {} does not match the hub's {} (partial file kept)", r.name, got, r.size);
  if (!r.sha256.empty()) {
    std::string h = sha256_file(part);
    if (h != r.sha256) {
      std::remove(part.c_str());
      fail("{}: sha256 {} does not match the hub's {}", r.name, h, r.sha256);
    }
  }
  if (std::rename(part.c_str(), dest.c_str()) != 0) fail("{}: cannot rename: {}", part, std::strerror(errno));
}

}  // namespace

std::string cached_repo_dir(const std::string& repo, const std::string& revision) {
  return repo_dir_in(cache_dir(), repo, revision);
}

std::string resolve_model_path(const std::string& arg) {
  struct stat st {};
  if (::stat(arg.c_str(), &st) == 0) return arg;
  std::string repo = arg, rev = "main";
  if (auto at = arg.find('@'); at != std::string::npos) {
    repo = arg.substr(0, at);
    rev = arg.substr(at + 1);
  }
  auto slash = repo.find('/');
  if (slash == std::string::npos || repo.find('/', slash + 1) != std::string::npos || !valid_part(repo.substr(0, slash)) ||
      !valid_part(repo.substr(slash + 1)) || !valid_part(rev))
    return arg;
  std::string dir = cached_repo_dir(repo, rev);
  if (file_exists(dir + "/config.json")) return dir;
  return arg;
}

bool is_model_file(const std::string& n) {
  static const char* kNames[] = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer.model",
                                 "tokenizer_config.json", "special_tokens_map.json", "model.safetensors.index.json"};
  for (auto* k : kNames)
    if (n == k) return true;
  return n.size() > 12 && n.compare(n.size() - 12, 12, ".safetensors") == 0 && n.find('/') == std::string::npos;
}

std::string pull(const std::string& repo, const PullOptions& opt_in, std::vector<PulledFile>* files) {
  PullOptions opt = opt_in;
  if (opt.endpoint.empty()) {
    const char* e = std::getenv("HF_ENDPOINT");
    opt.endpoint = e && *e ? e : "https://huggingface.co";
  }
  while (!opt.endpoint.empty() && opt.endpoint.back() == '/') opt.endpoint.pop_back();
  if (opt.token.empty())
    if (const char* t = std::getenv("HF_TOKEN")) opt.token = t;
  const std::string dir = repo_dir_in(opt.cache.empty() ? cache_dir() : opt.cache, repo, opt.revision);
  static bool inited = (curl_global_init(CURL_GLOBAL_DEFAULT), true);
  (void)inited;

  // 1. The file list, with sizes and LFS hashes.
  const std::string api = fmt::format("{}/api/models/{}/revision/{}?blobs=true", opt.endpoint, repo, opt.revision);
  std::string body;
  {
    Curl c;
    curl_slist* headers = auth_headers(opt.token);
    common_opts(c.h, api, headers);
    curl_easy_setopt(c.h, CURLOPT_WRITEFUNCTION, write_string);
    curl_easy_setopt(c.h, CURLOPT_WRITEDATA, &body);
    CURLcode rc = curl_easy_perform(c.h);
    long status = 0;
    curl_easy_getinfo(c.h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK) fail("{}: cannot reach the hub: {}", api, curl_easy_strerror(rc));
    if (status == 401 || status == 403) fail("{}: access denied (HTTP {}); set HF_TOKEN for gated models", repo, status);
    if (status == 404) fail("{}: repository or revision '{}' not found on {}", repo, opt.revision, opt.endpoint);
    if (status != 200) fail("{}: HTTP {}", api, status);
  }
  std::vector<Remote> remotes;
  try {
    auto j = nlohmann::json::parse(body);
    for (const auto& s : j.at("siblings")) {
      Remote r;
      r.name = s.at("rfilename").get<std::string>();
      if (!is_model_file(r.name)) continue;
      if (s.contains("size") && s["size"].is_number_unsigned()) {
        r.size = s["size"].get<uint64_t>();
        r.size_known = true;
      }
      if (s.contains("lfs") && s["lfs"].is_object()) {
        r.sha256 = s["lfs"].value("sha256", "");
        if (s["lfs"].contains("size") && s["lfs"]["size"].is_number_unsigned()) {
          r.size = s["lfs"]["size"].get<uint64_t>();
          r.size_known = true;
        }
      }
      remotes.push_back(std::move(r));
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: unexpected answer from the hub: {}", api, e.what());
  }
  bool has_config = false, has_weights = false;
  for (const auto& r : remotes) {
    has_config |= r.name == "config.json";
    has_weights |= r.name.size() > 12 && r.name.compare(r.name.size() - 12, 12, ".safetensors") == 0;
  }
  if (!has_config || !has_weights) fail("{}: the repository has no config.json and safetensors weights", repo);

  // 2. Each file, skipping the ones already complete.
  fs::create_directories(dir);
  for (const auto& r : remotes) {
    const std::string dest = dir + "/" + r.name;
    PulledFile pf{r.name, r.size, false};
    bool complete = file_exists(dest) && (!r.size_known || file_size(dest) == r.size);
    // A new revision of an LFS file often keeps its size: only its hash tells.
    if (complete && !r.sha256.empty()) complete = sha256_file(dest) == r.sha256;
    if (!complete) {
      download(fmt::format("{}/{}/resolve/{}/{}", opt.endpoint, repo, opt.revision, r.name), dest, r, opt);
      pf.downloaded = true;
    }
    pf.size = file_size(dest);
    if (files) files->push_back(pf);
  }
  return dir;
}

}  // namespace lmpress
