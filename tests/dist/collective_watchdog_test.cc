// Note [No hang]: a collective outstanding past the timeout is reported once, naming the rank,
// the collective and the step; one that completes in time, or waits in an untimed scope, is not.
// The clock is the test's (check() with chosen time points), except for one short real timeout
// that shows the background thread does the looking.
#include "dist/collective_watchdog.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

namespace xltune {
namespace {

using Clock = CollectiveWatchdog::Clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

// A watchdog whose reports are kept, with no thread: the test moves the clock.
struct Reports {
  std::vector<std::string> messages;
  std::shared_ptr<CollectiveWatchdog> watchdog(int rank, double timeout_s) {
    return std::make_shared<CollectiveWatchdog>(
        rank, timeout_s, [this](const std::string& m) { messages.push_back(m); }, nullptr,
        /*watch_in_background=*/false);
  }
};

// The step is process-wide; each test leaves it as it found it (0).
struct AtStep {
  explicit AtStep(int64_t step) { set_current_step(step); }
  ~AtStep() { set_current_step(0); }
};

TEST(CollectiveWatchdog, ACollectiveThatNeverCompletesIsReportedOnceNamingRankAndStep) {
  const AtStep at(7);
  Reports reports;
  auto watchdog = reports.watchdog(3, 5);
  const Clock::time_point start = Clock::now();
  const CollectiveWatchdog::Watch watch = watchdog->watch("all-reduce of 4 values", start);
  EXPECT_FALSE(watchdog->check(start + milliseconds(4900)));
  EXPECT_TRUE(reports.messages.empty());
  EXPECT_TRUE(watchdog->check(start + milliseconds(5100)));
  ASSERT_EQ(reports.messages.size(), 1u);
  EXPECT_EQ(reports.messages[0],
            "rank 3: all-reduce of 4 values at step 7 did not complete in 5 s: another rank died or hangs "
            "(--collective_timeout)");
  EXPECT_FALSE(watchdog->check(start + seconds(60))) << "one report: the job is ending";
  EXPECT_EQ(reports.messages.size(), 1u);
}

TEST(CollectiveWatchdog, CollectivesThatCompleteInTimeAreNotReported) {
  Reports reports;
  auto watchdog = reports.watchdog(0, 5);
  const Clock::time_point start = Clock::now();
  {
    const CollectiveWatchdog::Watch barrier = watchdog->watch("barrier", start);
    CollectiveWatchdog::Watch gather = watchdog->watch("all-gather of 8 values", start);
    EXPECT_EQ(watchdog->outstanding(), 2u);
    gather.reset();
    EXPECT_EQ(watchdog->outstanding(), 1u);
  }
  EXPECT_EQ(watchdog->outstanding(), 0u);
  EXPECT_FALSE(watchdog->check(start + seconds(3600)));
  EXPECT_TRUE(reports.messages.empty());
}

TEST(CollectiveWatchdog, TheOldestOverdueCollectiveIsTheOneNamed) {
  Reports reports;
  auto watchdog = reports.watchdog(1, 10);
  const Clock::time_point start = Clock::now();
  const CollectiveWatchdog::Watch first = watchdog->watch("broadcast from rank 0", start);
  const CollectiveWatchdog::Watch second = watchdog->watch("barrier", start + seconds(2));
  const std::optional<std::string> overdue = watchdog->overdue(start + seconds(20));
  ASSERT_TRUE(overdue.has_value());
  EXPECT_NE(overdue->find("rank 1: broadcast from rank 0 before the first step did not complete in 10 s"),
            std::string::npos)
      << *overdue;
}

TEST(CollectiveWatchdog, AMovedHandleStillEndsItsWatch) {
  Reports reports;
  auto watchdog = reports.watchdog(0, 5);
  CollectiveWatchdog::Watch outer;
  EXPECT_FALSE(outer);
  {
    CollectiveWatchdog::Watch inner = watchdog->watch("barrier");
    outer = std::move(inner);
  }
  EXPECT_TRUE(outer);
  EXPECT_EQ(watchdog->outstanding(), 1u);
  outer.reset();
  EXPECT_EQ(watchdog->outstanding(), 0u);
}

TEST(CollectiveWatchdog, CollectivesStartedInAnUntimedScopeHaveNoDeadline) {
  Reports reports;
  auto watchdog = reports.watchdog(2, 5);
  const Clock::time_point start = Clock::now();
  CollectiveWatchdog::Watch preprocessing;
  {
    const CollectiveWatchdog::UntimedScope untimed(watchdog);
    preprocessing = watchdog->watch("barrier", start);
  }
  EXPECT_FALSE(watchdog->check(start + seconds(3600))) << "rank 0's preprocessing may take an hour";
  const CollectiveWatchdog::Watch later = watchdog->watch("all-reduce of 2 values", start);
  EXPECT_TRUE(watchdog->check(start + seconds(6))) << "the scope has ended: timed again";
  ASSERT_EQ(reports.messages.size(), 1u);
  EXPECT_NE(reports.messages[0].find("all-reduce of 2 values"), std::string::npos) << reports.messages[0];
}

TEST(CollectiveWatchdog, TheBackgroundThreadReportsWithoutAnyoneAsking) {
  const AtStep at(12);
  std::promise<std::string> reported;
  auto watchdog = std::make_shared<CollectiveWatchdog>(
      0, 0.05, [&](const std::string& m) { reported.set_value(m); });
  const CollectiveWatchdog::Watch never = watchdog->watch("all-reduce of 3 values");
  std::future<std::string> message = reported.get_future();
  // A bound for a hang only, not a measurement: the report is due after 0.05 s.
  ASSERT_EQ(message.wait_for(seconds(30)), std::future_status::ready);
  EXPECT_EQ(message.get(),
            "rank 0: all-reduce of 3 values at step 12 did not complete in 0.05 s: another rank died or hangs "
            "(--collective_timeout)");
  watchdog->stop();
}

TEST(CollectiveWatchdog, DescribesTheStep) {
  EXPECT_EQ(describe_step(0), "before the first step");
  EXPECT_EQ(describe_step(41), "at step 41");
  set_current_step(5);
  EXPECT_EQ(current_step(), 5);
  set_current_step(0);
}

}  // namespace
}  // namespace xltune
