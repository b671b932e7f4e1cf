#include "dist/world.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"

namespace xltune {
namespace {

TEST(World, NoLauncherIsOneRank) {
  WorldInfo w = world_from_environment({});
  EXPECT_EQ(w.rank, 0);
  EXPECT_EQ(w.size, 1);
  EXPECT_EQ(w.launcher, "none");
}

TEST(World, MpirunWinsOverTheSlurmAllocationItRunsIn) {
  WorldInfo w = world_from_environment({{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                                        {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"SLURM_PROCID", "0"},
                                        {"SLURM_NTASKS", "1"}});
  EXPECT_EQ(w.launcher, "mpirun");
  EXPECT_EQ(w.rank, 3);
  EXPECT_EQ(w.size, 4);
  EXPECT_EQ(w.local_rank, 1);
}

TEST(World, SlurmAndTorchrunStyle) {
  WorldInfo s = world_from_environment({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"}});
  EXPECT_EQ(s.launcher, "slurm");
  EXPECT_EQ(s.rank, 5);
  EXPECT_EQ(s.local_rank, 1);
  WorldInfo e = world_from_environment({{"RANK", "1"}, {"WORLD_SIZE", "2"}});
  EXPECT_EQ(e.launcher, "env");
  EXPECT_EQ(e.size, 2);
}

TEST(World, BadValuesAreNamed) {
  EXPECT_THAT([] { world_from_environment({{"SLURM_PROCID", "x1"}, {"SLURM_NTASKS", "2"}}); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("SLURM_PROCID")));
  EXPECT_THROW(world_from_environment({{"RANK", "4"}, {"WORLD_SIZE", "2"}}), Error);
}

}  // namespace
}  // namespace xltune
