#include "core/path_guard.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "test_util.h"

namespace lmpress {
namespace {

namespace fs = std::filesystem;

void write(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

std::string guard_error(const PathGuard& g) {
  try {
    g.check();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PathGuard, RefusesAnOutputThatIsAnInputByPathLinkOrDirectory) {
  const std::string d = test::temp_dir();
  write(d + "/text.txt", "hello");
  fs::create_directory(d + "/model");
  write(d + "/model/config.json", "{}");
  write(d + "/model/model.safetensors", "x");
  ASSERT_EQ(::link((d + "/text.txt").c_str(), (d + "/hard.txt").c_str()), 0);
  fs::create_symlink(d + "/text.txt", d + "/sym.txt");

  const auto refused = [&](const std::string& out, OutputKind kind, const std::string& msg) {
    PathGuard g;
    g.input("-f", d + "/text.txt");
    g.input("model", d + "/model");
    g.output("-o", out, kind);
    const std::string e = guard_error(g);
    EXPECT_NE(e.find(msg), std::string::npos) << out << ": " << e;
    EXPECT_NE(e.find("-o"), std::string::npos) << e;
  };
  refused(d + "/text.txt", OutputKind::File, "the input -f");
  refused(d + "/./model/../text.txt", OutputKind::File, "the input -f");
  refused(d + "/hard.txt", OutputKind::File, "the input -f");  // same inode, other name
  refused(d + "/sym.txt", OutputKind::File, "the input -f");
  refused(d + "/model/model.safetensors", OutputKind::File, "inside " + d + "/model");
  refused(d + "/model", OutputKind::Either, "the input model");
  refused(d, OutputKind::Directory, "holds the input");
  refused(d + "/model", OutputKind::File, "is a directory");
  refused(d + "/text.txt", OutputKind::Directory, "not a directory");

  PathGuard ok;
  ok.input("-f", d + "/text.txt");
  ok.input("model", d + "/model");
  ok.output("-o", d + "/model/new.gguf");  // a new file beside the input is fine
  ok.output("-o", d + "/out-dir", OutputKind::Directory);
  ok.output("-o", "", OutputKind::File);  // an option not given
  EXPECT_EQ(guard_error(ok), "");
}

TEST(PathGuard, ReplacesOnlyModelDirectories) {
  const std::string d = test::temp_dir();
  fs::create_directory(d + "/empty");
  fs::create_directory(d + "/user");
  write(d + "/user/notes.txt", "mine");
  fs::create_directories(d + "/nested/sub");
  write(d + "/nested/config.json", "{}");
  fs::create_directory(d + "/model");
  write(d + "/model/config.json", "{}");
  EXPECT_NO_THROW(check_replaceable_dir("out", d + "/empty"));
  EXPECT_NO_THROW(check_replaceable_dir("out", d + "/model"));
  EXPECT_NO_THROW(check_replaceable_dir("out", d + "/missing"));
  EXPECT_THROW(check_replaceable_dir("out", d + "/user"), Error);
  EXPECT_THROW(check_replaceable_dir("out", d + "/nested"), Error);
}

TEST(AtomicDir, SwapsInWholeAndLeavesNothingWhenAbandoned) {
  const std::string d = test::temp_dir(), out = d + "/model";
  fs::create_directory(out);
  write(out + "/config.json", "old");
  write(out + "/tokenizer.json", "stale");
  {
    AtomicDir a(out);
    write(a.path() + "/config.json", "new");
    EXPECT_EQ(read_text_file(out + "/config.json"), "old");  // untouched until commit
  }  // abandoned: as an error unwinding would
  EXPECT_EQ(read_text_file(out + "/config.json"), "old");
  EXPECT_TRUE(fs::exists(out + "/tokenizer.json"));
  {
    AtomicDir a(out);
    write(a.path() + "/config.json", "new");
    a.commit();
  }
  EXPECT_EQ(read_text_file(out + "/config.json"), "new");
  EXPECT_FALSE(fs::exists(out + "/tokenizer.json"));  // replaced whole: no stale file
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(d)) entries += e.path().filename() != "model";
  EXPECT_EQ(entries, 0u) << "temporary or old directories left behind";
}

TEST(ReadTextFile, RefusesDevicesFifosAndFilesOverTheLimit) {
  const std::string d = test::temp_dir();
  EXPECT_THROW(read_text_file("/dev/zero"), Error);
  EXPECT_THROW(read_text_file(d), Error);
  const std::string fifo = d + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  try {
    read_text_file(fifo);  // must not wait for a writer
    ADD_FAILURE() << "a FIFO was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
  write(d + "/big.txt", std::string(3 << 20, 'a'));
  ::setenv("LMPRESS_MAX_TEXT_MB", "2", 1);
  try {
    read_text_file(d + "/big.txt");
    ADD_FAILURE() << "the limit was not applied";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("LMPRESS_MAX_TEXT_MB"), std::string::npos) << e.what();
  }
  for (const char* bad : {"abc", "0", "-1", "99999999999"}) {
    ::setenv("LMPRESS_MAX_TEXT_MB", bad, 1);
    try {
      read_text_file(d + "/big.txt");
      ADD_FAILURE() << "LMPRESS_MAX_TEXT_MB=" << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("LMPRESS_MAX_TEXT_MB='"), std::string::npos) << e.what();
    }
  }
  ::setenv("LMPRESS_MAX_TEXT_MB", "4", 1);
  EXPECT_EQ(read_text_file(d + "/big.txt").size(), size_t(3 << 20));
  ::unsetenv("LMPRESS_MAX_TEXT_MB");
}

}  // namespace
}  // namespace lmpress
