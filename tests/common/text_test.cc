#include "gangway/common/text.h"

#include <string>

#include <gtest/gtest.h>

namespace gangway {
namespace {

TEST(NameTest, AcceptsWhatIdsLookLike) {
  for (const char* ok :
       {"a", "job", "my-job_2", "node07.rack3", "0", "A.b-C_d", "host-1234-abcdef01-99"}) {
    EXPECT_TRUE(isName(ok)) << ok;
  }
  EXPECT_TRUE(isName(std::string(kMaxNameLength, 'x')));
}

TEST(NameTest, RefusesPathsControlCharactersAndLongNames) {
  for (const char* bad : {"", ".", "..", "a/..", "../x", "a..b", "-a", "a-", ".a", "a.", "a b",
                          "a/b", "a\nb", "a:b", "\xc3\xa9"}) {
    EXPECT_FALSE(isName(bad)) << bad;
  }
  EXPECT_FALSE(isName(std::string(kMaxNameLength + 1, 'x')));
  EXPECT_FALSE(isName("abcdef", 5));
  EXPECT_FALSE(isName(std::string("a\0b", 3)));
}

TEST(PrintableLineTest, RefusesControlCharactersAndLongText) {
  EXPECT_TRUE(isPrintableLine("spine1/leaf2 caf\xc3\xa9", 64));
  EXPECT_TRUE(isPrintableLine("", 0));
  EXPECT_FALSE(isPrintableLine("a\nb", 64));
  EXPECT_FALSE(isPrintableLine("a\x7f", 64));
  EXPECT_FALSE(isPrintableLine("abcdef", 5));
}

TEST(EscapeLineTest, KeepsPrintableTextAndUtf8) {
  EXPECT_EQ(escapeLine("rank 3 exited with code 1"), "rank 3 exited with code 1");
  EXPECT_EQ(escapeLine("caf\xc3\xa9 \xe2\x9c\x93"), "caf\xc3\xa9 \xe2\x9c\x93");
}

TEST(EscapeLineTest, EscapesWhatCouldForgeALogLine) {
  EXPECT_EQ(escapeLine("a\nI 12:00:00 forged\r\tb"), "a\\nI 12:00:00 forged\\r\\tb");
  EXPECT_EQ(escapeLine(std::string("x\0y\x1b[31m\x7f", 9)), "x\\x00y\\x1b[31m\\x7f");
  // Invalid UTF-8: a lone continuation byte, a truncated sequence, an overlong '/', a surrogate.
  EXPECT_EQ(escapeLine("\x80|\xe2\x9c|\xc0\xaf|\xed\xa0\x80"),
            "\\x80|\\xe2\\x9c|\\xc0\\xaf|\\xed\\xa0\\x80");
}

TEST(EscapeLineTest, CutsLongTextAndSaysHowMuch) {
  const std::string big(10'000, 'z');
  const std::string cut = escapeLine(big, 100);
  EXPECT_EQ(cut, std::string(100, 'z') + "... (9900 more bytes)");
  // An escape is never split: 99 letters and a newline do not fit in 100 bytes.
  EXPECT_EQ(escapeLine(std::string(99, 'a') + "\n", 100),
            std::string(99, 'a') + "... (1 more byte)");
  // Nor is a character.
  EXPECT_EQ(escapeLine("ab\xc3\xa9", 3), "ab... (2 more bytes)");
  EXPECT_LE(escapeLine(std::string(1 << 20, '\n')).size(), kMaxMessageBytes + 32);
}

}  // namespace
}  // namespace gangway
