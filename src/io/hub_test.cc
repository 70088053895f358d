#include "io/hub.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <openssl/sha.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/error.h"
#include "core/mapped_file.h"
#include "model/model.h"
#include "synthetic_model.h"
#include "test_util.h"

namespace lmpress {
namespace {
namespace fs = std::filesystem;

std::string sha256_hex(const std::string& s) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), md);
  std::string h;
  for (unsigned char c : md) h += fmt::format("{:02x}", c);
  return h;
}

// A local server in the hub's URL layout: /api/models/ORG/NAME/revision/REV
// and /ORG/NAME/resolve/REV/FILE (with Range support).
class FakeHub {
 public:
  explicit FakeHub(std::string dir) : dir_(std::move(dir)) {
    svr_.Get(R"(/api/models/([^/]+)/([^/]+)/revision/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      if (req.matches[1] != "org" || req.matches[2] != "tiny") {
        res.status = 404;
        return;
      }
      nlohmann::json sib = nlohmann::json::array();
      for (auto& f : fs::directory_iterator(dir_)) {
        std::string name = f.path().filename().string();
        std::string body = read_text_file(f.path().string());
        nlohmann::json e = {{"rfilename", name}, {"size", body.size()}};
        if (name == "model.safetensors")
          e["lfs"] = {{"sha256", corrupt_sha ? std::string(64, '0') : sha256_hex(body)}, {"size", body.size()}};
        sib.push_back(e);
      }
      sib.push_back({{"rfilename", "onnx/model.onnx"}, {"size", 3}});  // not a model file lmpress needs
      res.set_content(nlohmann::json{{"sha", "abc"}, {"siblings", sib}}.dump(), "application/json");
    });
    svr_.Get(R"(/org/tiny/resolve/([^/]+)/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      std::string path = dir_ + "/" + std::string(req.matches[2]);
      if (!fs::exists(path)) {
        res.status = 404;
        return;
      }
      file_requests++;
      if (req.has_header("Range")) last_range = req.get_header_value("Range");
      res.set_content(read_text_file(path), "application/octet-stream");
    });
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
    while (!svr_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeHub() {
    svr_.stop();
    thread_.join();
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

  std::atomic<int> file_requests{0};
  std::string last_range;
  bool corrupt_sha = false;

 private:
  std::string dir_;
  httplib::Server svr_;
  int port_ = 0;
  std::thread thread_;
};

TEST(Hub, PullsResumesVerifiesAndResolves) {
  std::string src = test::temp_dir();
  test::write_synthetic_hf(src, {});
  std::ofstream(src + "/README.md") << "# tiny\n";
  FakeHub hub(src);
  std::string cache = test::temp_dir();
  PullOptions o;
  o.endpoint = hub.endpoint();
  o.cache = cache;
  o.quiet = true;

  std::vector<PulledFile> files;
  std::string dir = pull("org/tiny", o, &files);
  EXPECT_EQ(files.size(), 4u);  // config, safetensors, tokenizer.json, tokenizer_config.json
  for (const auto& f : files) {
    EXPECT_TRUE(f.downloaded) << f.name;
    EXPECT_EQ(read_text_file(dir + "/" + f.name), read_text_file(src + "/" + f.name)) << f.name;
  }
  EXPECT_FALSE(fs::exists(dir + "/README.md"));

  // Complete files are not fetched again.
  int before = hub.file_requests;
  files.clear();
  pull("org/tiny", o, &files);
  EXPECT_EQ(hub.file_requests, before);
  for (const auto& f : files) EXPECT_FALSE(f.downloaded);

  // A partial download resumes from where it stopped.
  std::string weights = read_text_file(src + "/model.safetensors");
  fs::remove(dir + "/model.safetensors");
  std::ofstream(dir + "/model.safetensors.incomplete", std::ios::binary) << weights.substr(0, 1000);
  pull("org/tiny", o);
  EXPECT_EQ(hub.last_range, "bytes=1000-");
  EXPECT_EQ(read_text_file(dir + "/model.safetensors"), weights);
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors.incomplete"));

  // A hash mismatch is an error and leaves no file behind.
  fs::remove(dir + "/model.safetensors");
  hub.corrupt_sha = true;
  try {
    pull("org/tiny", o);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sha256"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors.incomplete"));
  hub.corrupt_sha = false;

  try {
    pull("org/missing", o);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not found"), std::string::npos) << e.what();
  }
  EXPECT_THROW(pull("not-a-repo", o), Error);
  EXPECT_THROW(pull("../../etc", o), Error);

  // The CLI pulls into the cache, and ORG/NAME then names the model.
  auto r = test::run_cli("pull org/tiny --endpoint " + hub.endpoint() + " --cache " + cache + " -q");
  EXPECT_EQ(r.status, 0) << r.out;
  setenv("LMPRESS_CACHE", cache.c_str(), 1);
  EXPECT_EQ(resolve_model_path("org/tiny"), dir);
  EXPECT_EQ(resolve_model_path("org/other"), "org/other");
  auto m = load_model("org/tiny");
  EXPECT_EQ(m->cfg.dim, 32);
  auto info = test::run_cli("info org/tiny --no-tensors");
  EXPECT_EQ(info.status, 0) << info.out;
  unsetenv("LMPRESS_CACHE");
  auto down = test::run_cli("pull org/tiny --endpoint http://127.0.0.1:1 --cache " + cache + " -q");
  EXPECT_EQ(down.status, 1);
  EXPECT_NE(down.out.find("cannot reach the hub"), std::string::npos) << down.out;
}

// A new revision of the weights with the same size: the cached copy's hash
// no longer matches the hub's, so it is fetched again (and nothing else is).
TEST(Hub, RefetchesACachedFileWhoseHashChanged) {
  std::string src = test::temp_dir();
  test::write_synthetic_hf(src, {});
  FakeHub hub(src);
  PullOptions o;
  o.endpoint = hub.endpoint();
  o.cache = test::temp_dir();
  o.quiet = true;
  const std::string dir = pull("org/tiny", o);

  std::string weights = read_text_file(src + "/model.safetensors");
  weights.back() ^= 0x40;  // the last byte of the last tensor's data
  std::ofstream(src + "/model.safetensors", std::ios::binary) << weights;
  ASSERT_NE(read_text_file(dir + "/model.safetensors"), weights);
  const int before = hub.file_requests;
  std::vector<PulledFile> files;
  pull("org/tiny", o, &files);
  EXPECT_EQ(hub.file_requests, before + 1);
  for (const auto& f : files) EXPECT_EQ(f.downloaded, f.name == "model.safetensors") << f.name;
  EXPECT_EQ(read_text_file(dir + "/model.safetensors"), weights);
}

}  // namespace
}  // namespace lmpress
