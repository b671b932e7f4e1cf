// The thread group's abort: a rank that fails must not leave the others waiting forever in a
// collective, or an in-process job test with a failing rank hangs instead of failing
// (tests/job/train_job_test.cc, FailingRankTakesTheJobDown).
#include "dist/thread_group.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "core/error.h"

namespace xltune {
namespace {

TEST(ThreadGroup, AbortWakesTheRanksWaitingAndFailsLaterCollectives) {
  const std::vector<std::shared_ptr<Communicator>> ranks = make_thread_group(2);
  std::string waiting_error;
  std::thread waiting([&] {
    try {
      ranks[0]->barrier();  // rank 1 never arrives
    } catch (const std::exception& e) {
      waiting_error = e.what();
    }
  });
  std::string aborting_error;
  try {
    ranks[1]->abort(3);
  } catch (const std::exception& e) {
    aborting_error = e.what();
  }
  waiting.join();
  EXPECT_NE(waiting_error.find("rank 1 of 2 aborted the job (code 3)"), std::string::npos) << waiting_error;
  EXPECT_NE(aborting_error.find("aborted the job"), std::string::npos) << aborting_error;
  at::Tensor t = at::ones({2});
  EXPECT_THROW(ranks[0]->all_reduce_sum(t), Error) << "a collective after the abort";
}

}  // namespace
}  // namespace xltune
