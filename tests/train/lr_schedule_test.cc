// LR schedules against diffusers' get_scheduler (tests/reference/make_train_references.py).
#include "train/lr_schedule.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "test_paths.h"

namespace xltune {
namespace {

TEST(LrScheduleParity, EveryStepOfEveryScheduleMatchesDiffusers) {
  const auto cases = nlohmann::json::parse(read_file(std::string(xltune::test_paths::testdata_dir()) + "/train_refs/lr.json"));
  ASSERT_EQ(cases.size(), 12u);
  for (auto it = cases.begin(); it != cases.end(); ++it) {
    const std::string key = it.key();
    const auto a = key.find('/'), b = key.rfind('/');
    LrSchedule s{parse_lr_schedule(key.substr(0, a)), std::stoll(key.substr(a + 1, b - a - 1)),
                 std::stoll(key.substr(b + 1))};
    const auto& want = it.value();
    for (size_t i = 0; i < want.size(); ++i)
      // Double arithmetic and libm, no ATen kernels: equal to the last bits on every CPU path.
      EXPECT_NEAR(s.factor_for_step(static_cast<int64_t>(i) + 1), want[i].get<double>(), 1e-15) << key << " step " << i + 1;
  }
}

TEST(LrSchedule, WarmupStartsAtZeroAndConstantHasNone) {
  LrSchedule warm{LrScheduleKind::kConstantWithWarmup, 4, 100};
  EXPECT_EQ(warm.factor_for_step(1), 0.0);
  EXPECT_EQ(warm.factor_for_step(3), 0.5);
  EXPECT_EQ(warm.factor_for_step(5), 1.0);
  LrSchedule constant{LrScheduleKind::kConstant, 100, 1000};
  EXPECT_EQ(constant.factor_for_step(1), 1.0);
  LrSchedule linear{LrScheduleKind::kLinear, 0, 10};
  EXPECT_EQ(linear.factor_for_step(10), 0.1) << "the last step still learns";
}

TEST(LrSchedule, UnknownNameListsTheChoices) {
  try {
    parse_lr_schedule("polynomial");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "--lr_scheduler 'polynomial': expected constant, constant_with_warmup, linear or cosine");
  }
}

}  // namespace
}  // namespace xltune
