#include "gangway/common/file.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace gangway {
namespace {

namespace fs = std::filesystem;

class FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "gangway_file_test_XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& content, mode_t mode) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << content;
    EXPECT_EQ(::chmod(path.c_str(), mode), 0);
    return path;
  }

  fs::path dir_;
};

TEST_F(FileTest, ReadsTheWholeFile) {
  const std::string content(200'000, 'x');
  auto read = readFile(write("big", content, 0644), "--config");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, content);
}

TEST_F(FileTest, MissingFileIsNotFoundAndNamesTheInput) {
  auto read = readFile((dir_ / "missing").string(), "--topology");
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(read.status().message(), "--topology '" + (dir_ / "missing").string() +
                                         "': cannot be read (No such file or directory)");
}

TEST_F(FileTest, DirectoryAndOversizedFilesAreRefused) {
  auto dir = readFile(dir_.string(), "--topology");
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(dir.status().message().find("is a directory"), absl::string_view::npos);
  auto big = readFile(write("big", std::string(5000, 'x'), 0644), "TLS key", 4096);
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("larger than 4096 bytes"), absl::string_view::npos)
      << big.status();
}

TEST_F(FileTest, SecretIsTrimmedOfSurroundingWhitespace) {
  auto secret = readSecretFile(write("token", "  s3cret token\n\n", 0600), "--token-file");
  ASSERT_TRUE(secret.ok()) << secret.status();
  EXPECT_EQ(*secret, "s3cret token");
  EXPECT_EQ(*readSecretFile(write("ro", "abc", 0400), "--token-file"), "abc");
}

TEST_F(FileTest, SecretOpenToOthersIsRefusedWithTheFix) {
  const std::string path = write("token", "s3cret\n", 0644);
  auto secret = readSecretFile(path, "--token-file");
  ASSERT_FALSE(secret.ok());
  EXPECT_EQ(secret.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(secret.status().message(),
            "--token-file '" + path +
                "': permissions 0644 are too open for a secret: it must not be readable by others "
                "(chmod 600 " +
                path + ")");
  EXPECT_EQ(secret.status().message().find("s3cret"), absl::string_view::npos);
  EXPECT_FALSE(readSecretFile(write("w", "s3cret\n", 0602), "--token-file").ok());
}

TEST_F(FileTest, SecretOpenToTheGroupOfItsOwnerIsRefused) {
  auto secret = readSecretFile(write("token", "s3cret\n", 0640), "--token-file");
  ASSERT_FALSE(secret.ok());
  EXPECT_NE(secret.status().message().find("readable by the group"), absl::string_view::npos)
      << secret.status();
}

TEST_F(FileTest, SecretOfAnotherOwnerMayBeGroupReadable) {
  // A Kubernetes Secret mounted for a pod's fsGroup: owned by root, readable by the group.
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give the file another owner";
  const std::string path = write("token", "s3cret\n", 0640);
  ASSERT_EQ(::chown(path.c_str(), 65534, 0), 0);
  auto secret = readSecretFile(path, "--token-file");
  ASSERT_TRUE(secret.ok()) << secret.status();
  EXPECT_EQ(*secret, "s3cret");
}

TEST_F(FileTest, EmptyOrMissingSecretIsRefused) {
  auto empty = readSecretFile(write("token", " \n", 0600), "--rdzv-conf token_file=");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("the file is empty"), absl::string_view::npos);
  auto missing = readSecretFile((dir_ / "none").string(), "--token-file");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("cannot be read"), absl::string_view::npos);
  auto big = readSecretFile(write("big", std::string(70'000, 'x'), 0600), "--token-file");
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("larger than"), absl::string_view::npos);
}

}  // namespace
}  // namespace gangway
