#include "gangway/launcher/line_prefixer.h"

#include <gtest/gtest.h>

namespace gangway::launcher {
namespace {

TEST(LinePrefixerTest, PrefixesWholeLinesOnly) {
  LinePrefixer p("[rank3]:");
  std::string out;
  p.feed("hel", out);
  EXPECT_EQ(out, "");
  p.feed("lo\nwor", out);
  EXPECT_EQ(out, "[rank3]:hello\n");
  p.feed("ld\n\nx", out);
  EXPECT_EQ(out, "[rank3]:hello\n[rank3]:world\n[rank3]:\n");
  EXPECT_EQ(p.pending(), 1u);
  p.finish(out);
  EXPECT_EQ(out, "[rank3]:hello\n[rank3]:world\n[rank3]:\n[rank3]:x\n");
  p.finish(out);  // nothing held: nothing added
  EXPECT_EQ(out, "[rank3]:hello\n[rank3]:world\n[rank3]:\n[rank3]:x\n");
}

TEST(LinePrefixerTest, ByteAtATimeEqualsOneChunk) {
  const std::string text = "a\nbb\nccc\n\ndddd";
  LinePrefixer whole("[r]:"), bytes("[r]:");
  std::string a, b;
  whole.feed(text, a);
  whole.finish(a);
  for (char c : text) bytes.feed(std::string_view(&c, 1), b);
  bytes.finish(b);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, "[r]:a\n[r]:bb\n[r]:ccc\n[r]:\n[r]:dddd\n");
}

TEST(LinePrefixerTest, OverlongLinesAreSplitIntoPrefixedPieces) {
  LinePrefixer p("[r]:", 4);
  std::string out;
  p.feed("abcdefghij\nxy\n", out);
  EXPECT_EQ(out, "[r]:abcd\n[r]:efgh\n[r]:ij\n[r]:xy\n");
  out.clear();
  p.feed("abc", out);
  p.feed("d", out);  // exactly max_line bytes with no newline yet: emitted as a piece
  EXPECT_EQ(out, "[r]:abcd\n");
}

}  // namespace
}  // namespace gangway::launcher
