// The thread group's abort: a rank that fails must not leave the others waiting forever in a
// collective, or an in-process job test with a failing rank hangs instead of failing
// (tests/job/train_job_test.cc, FailingRankTakesTheJobDown).
#include "dist/thread_group.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "core/error.h"
#include "dist/collective_watchdog.h"

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

// Note [No hang]: a rank that stops taking part (dead, frozen) leaves the other in its next
// collective; with a timeout that one ends with the watchdog's error instead of waiting forever,
// and the job is down for every rank.
TEST(ThreadGroup, ACollectiveTheOtherRankNeverJoinsEndsWithTheTimeoutError) {
  const std::vector<std::shared_ptr<Communicator>> ranks = make_thread_group(2);
  for (const auto& rank : ranks) rank->set_collective_timeout(1);
  set_current_step(4);
  std::thread rank1([&] {
    at::Tensor t = at::ones({3});
    ranks[1]->all_reduce_sum(t);  // takes part once, then stops
  });
  at::Tensor t = at::ones({3});
  ranks[0]->all_reduce_sum(t);
  rank1.join();
  EXPECT_TRUE(at::equal(t, at::full({3}, 2.0f)));

  const auto start = std::chrono::steady_clock::now();
  std::string error;
  try {
    at::Tensor u = at::ones({5});
    ranks[0]->all_reduce_sum(u);  // rank 1 never comes
  } catch (const Error& e) {
    error = e.what();
  }
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  set_current_step(0);
  EXPECT_NE(error.find("rank 0: all-reduce of 5 values at step 4 did not complete in 1 s: another rank died or "
                       "hangs (--collective_timeout)"),
            std::string::npos)
      << error;
  EXPECT_GE(waited, 1.0) << "not before the timeout";
  EXPECT_LT(waited, 30.0) << "a bound for a hang only";
  EXPECT_THROW(ranks[1]->barrier(), Error) << "the job is down for the other rank too";
}

// Note [bf16 gradient reduction]: a group that does not sum bf16 refuses it, as MPI does, and the
// bf16 helpers then go through an fp32 copy; one that does (NCCL's stand-in) sums bf16 itself.
TEST(ThreadGroup, Bf16SumsNativelyOrThroughAnFp32Copy) {
  for (bool native : {false, true}) {
    const std::vector<std::shared_ptr<Communicator>> ranks = make_thread_group(2, native);
    EXPECT_EQ(ranks[0]->sums_bf16(), native);
    if (!native) {
      EXPECT_THROW(ranks[0]->start_all_reduce_sum(at::ones({4}, at::kBFloat16)), Error);
    }
    // 1 + 2^-7 and 2^-8, both bf16 numbers: their sum lies halfway between the bf16 numbers 1 + 2^-7
    // and 1 + 2^-6 and rounds to the even one, 1 + 2^-6, whether bf16 adds or an fp32 copy does.
    std::vector<at::Tensor> t{at::full({3}, 1.0 + 1.0 / 128, at::kBFloat16), at::full({3}, 1.0 / 256, at::kBFloat16)};
    std::vector<at::Tensor> in{at::arange(6, at::kFloat).to(at::kBFloat16), at::ones({6}, at::kBFloat16)};
    std::vector<at::Tensor> out{at::zeros({3}, at::kBFloat16), at::zeros({3}, at::kBFloat16)};
    std::thread other([&] {
      start_all_reduce_sum_bf16(*ranks[1], t[1])->wait();
      start_reduce_scatter_sum_bf16(*ranks[1], in[1], out[1])->wait();
    });
    start_all_reduce_sum_bf16(*ranks[0], t[0])->wait();
    start_reduce_scatter_sum_bf16(*ranks[0], in[0], out[0])->wait();
    other.join();
    for (int r = 0; r < 2; ++r) {
      EXPECT_EQ(t[r].scalar_type(), at::kBFloat16);
      EXPECT_TRUE(at::equal(t[r], at::full({3}, 1.0 + 1.0 / 64, at::kBFloat16))) << r;
    }
    EXPECT_TRUE(at::equal(out[0], at::tensor({1.f, 2.f, 3.f}).to(at::kBFloat16)));
    EXPECT_TRUE(at::equal(out[1], at::tensor({4.f, 5.f, 6.f}).to(at::kBFloat16)));
  }
}

}  // namespace
}  // namespace xltune
