#include "core/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"

namespace xltune {
namespace {

TEST(Log, LineCarriesRankAndLevel) {
  EXPECT_EQ(format_log_line(LogLevel::kInfo, 3, "loaded", false), "[xltune r3 I] loaded\n");
  EXPECT_EQ(format_log_line(LogLevel::kWarn, -1, "x", false), "[xltune W] x\n");
  std::string timed = format_log_line(LogLevel::kError, 0, "y", true);
  EXPECT_EQ(timed.rfind("[xltune r0 ", 0), 0u);
  EXPECT_EQ(timed.substr(timed.size() - 6), " E] y\n");
}

TEST(Log, ParsesLevelsAndNamesBadOnes) {
  EXPECT_EQ(parse_log_level("debug"), LogLevel::kDebug);
  EXPECT_EQ(parse_log_level("warn"), LogLevel::kWarn);
  EXPECT_THAT([] { parse_log_level("loud"); }, ::testing::ThrowsMessage<Error>(::testing::HasSubstr("'loud'")));
}

TEST(Log, LevelFiltersMessages) {
  LogLevel saved = log_level();
  set_log_level(LogLevel::kError);
  testing::internal::CaptureStderr();
  log_info("hidden");
  log_error("shown");
  std::string err = testing::internal::GetCapturedStderr();
  set_log_level(saved);
  EXPECT_EQ(err.find("hidden"), std::string::npos);
  EXPECT_NE(err.find("shown"), std::string::npos);
}

}  // namespace
}  // namespace xltune
