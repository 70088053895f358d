#include "core/path_guard.h"

#include <sys/stat.h>

#include <filesystem>

#include "core/error.h"

namespace lmpress {

namespace fs = std::filesystem;

namespace {

struct Node {
  std::string path, canonical;
  dev_t dev = 0;
  ino_t ino = 0;
};

std::string canonical_path(const std::string& p) {
  std::error_code ec;
  auto c = fs::weakly_canonical(fs::absolute(p, ec), ec);
  return ec ? fs::absolute(p).lexically_normal().string() : c.string();
}

bool is_under(const std::string& child, const std::string& dir) {
  if (dir == "/") return child.size() > 1 && child[0] == '/';
  return child.size() > dir.size() && child.compare(0, dir.size(), dir) == 0 && child[dir.size()] == '/';
}

// A directory input stands for everything below it. A missing input is left
// to the loader, which names it in its own error.
void expand(const std::string& path, std::vector<Node>& out) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return;
  out.push_back({path, canonical_path(path), st.st_dev, st.st_ino});
  if (!S_ISDIR(st.st_mode)) return;
  std::error_code ec;
  size_t n = 0;
  for (fs::recursive_directory_iterator it(path, fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec)) {
    if (++n > 100000) fail("{}: more than 100000 entries below this input directory", path);
    struct stat s {};
    const std::string p = it->path().string();
    if (::stat(p.c_str(), &s) == 0) out.push_back({p, canonical_path(p), s.st_dev, s.st_ino});
  }
}

}  // namespace

void PathGuard::input(const std::string& what, const std::string& path) {
  if (!path.empty()) inputs_.push_back({what, path});
}

void PathGuard::output(const std::string& what, const std::string& path, OutputKind kind, const std::string& marker) {
  if (!path.empty()) outputs_.push_back({what, path, kind, marker});
}

void PathGuard::check() const {
  std::vector<std::pair<const Entry*, Node>> nodes;
  for (const Entry& in : inputs_) {
    std::vector<Node> v;
    expand(in.path, v);
    for (auto& n : v) nodes.emplace_back(&in, std::move(n));
  }
  for (const Entry& out : outputs_) {
    struct stat st {};
    const bool exists = ::stat(out.path.c_str(), &st) == 0;
    if (exists && out.kind == OutputKind::File && S_ISDIR(st.st_mode))
      fail("{} {}: is a directory, expected a file", out.what, out.path);
    if (exists && out.kind == OutputKind::Directory && !S_ISDIR(st.st_mode))
      fail("{} {}: exists and is not a directory", out.what, out.path);
    const bool as_dir = out.kind == OutputKind::Directory || (out.kind == OutputKind::Either && exists && S_ISDIR(st.st_mode));
    const std::string oc = canonical_path(out.path);
    for (const auto& [in, n] : nodes) {
      const bool same = (exists && n.dev == st.st_dev && n.ino == st.st_ino) || n.canonical == oc;
      const std::string named = n.path == in->path ? in->path : fmt::format("{}, inside {}", n.path, in->path);
      if (same) fail("{} {}: refusing to overwrite the input {} ({})", out.what, out.path, in->what, named);
      if (as_dir && is_under(n.canonical, oc))
        fail("{} {}: this directory would be replaced, but it holds the input {} ({})", out.what, out.path, in->what,
             named);
    }
    if (as_dir) check_replaceable_dir(out.what, out.path, out.marker);
  }
}

void check_replaceable_dir(const std::string& what, const std::string& dir, const std::string& marker) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  bool empty = true, has_config = false;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    empty = false;
    if (it->is_directory(ec))
      fail("{} {}: exists and has a subdirectory ({}); lmpress replaces only model directories: remove it or choose "
           "another path",
           what, dir, it->path().filename().string());
    has_config |= it->path().filename() == marker;
  }
  if (ec) fail("{} {}: cannot list: {}", what, dir, ec.message());
  if (!empty && !has_config)
    fail("{} {}: exists, is not empty and is not a {} (no {}); refusing to replace it: remove it or choose another path",
         what, dir,
         marker == kModelDirMarker ? "model directory" : marker == "state.json" ? "training checkpoint" : "PEFT adapter",
         marker);
}

}  // namespace lmpress
