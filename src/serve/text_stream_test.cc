#include "serve/text_stream.h"

#include <gtest/gtest.h>

namespace lmpress::serve {
namespace {

TEST(TextStream, StopStringAcrossPiecesIsNeverSent) {
  TextStream t({"</s>", "\n\n"});
  std::string sent;
  for (const char* p : {"Hello", " wor", "ld<", "/", "s> more"}) sent += t.push(p);
  EXPECT_TRUE(t.stopped());
  EXPECT_EQ(sent, "Hello world");
  EXPECT_EQ(t.push("x"), "");
  EXPECT_EQ(t.flush(), "");
}

TEST(TextStream, HeldPrefixIsReleasedWhenItDiverges) {
  TextStream t({"STOP"});
  EXPECT_EQ(t.push("a ST"), "a ");  // "ST" may start STOP
  EXPECT_EQ(t.push("OR"), "STOR");  // it did not
  EXPECT_EQ(t.push("S"), "");
  EXPECT_EQ(t.flush(), "S");
  EXPECT_FALSE(t.stopped());
}

TEST(TextStream, EarliestStopWinsAndUtf8IsWhole) {
  TextStream t({"b", "ab"});
  EXPECT_EQ(t.push("xxab"), "xx");
  TextStream u;
  // "é" is C3 A9: the lead byte alone is held back.
  EXPECT_EQ(u.push("caf\xC3"), "caf");
  EXPECT_EQ(u.push("\xA9!"), "\xC3\xA9!");
  EXPECT_EQ(u.push("\xE2\x82"), "");
  EXPECT_EQ(u.flush(), "\xE2\x82");
}

}  // namespace
}  // namespace lmpress::serve
