// The C++ half of bench/allreduce.py, run under mpirun: training steps of the small preset on
// CPU with the bucketed reducer (Note [Gradient buckets]), and one flat MPI all-reduce of the
// same bytes, timed on every rank.
//
//   mpirun -np N xltune_bench_allreduce MODEL_DIR lora|full RESOLUTION BATCH STEPS
//
// Prints (rank 0), one JSON line: median step ms, the flat all-reduce's median ms, the bucket
// sizes, and per bucket the median time from launch to completion and the part of it before
// backward ended (the all-reduce hidden behind backward).
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench_util.h"
#include "core/error.h"
#include "dist/bucketed_reducer.h"
#include "dist/mpi_communicator.h"
#include "sdxl/sdxl_model.h"
#include "train/trainer.h"

namespace xltune {
namespace {

using bench::now;

using bench::median;

int run(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: mpirun -np N %s MODEL_DIR lora|full RESOLUTION BATCH STEPS\n", argv[0]);
    return 2;
  }
  MpiCommunicator comm;
  const bool lora = std::string(argv[2]) == "lora";
  const int64_t resolution = std::stoll(argv[3]), batch = std::stoll(argv[4]), steps = std::stoll(argv[5]);
  SdxlLoadOptions o;
  o.unet = o.text_encoders = o.vae = at::TensorOptions().dtype(at::kFloat);
  o.with_vae = false;
  SdxlModel m = load_sdxl(argv[1], o);
  TrainerConfig c;
  c.is_lora = lora;
  c.max_train_steps = steps + 1;
  c.pivot_step = 0;  // after the pivot: the steady state of a run
  c.schedule = LrSchedule{LrScheduleKind::kConstant, 0, c.max_train_steps};
  auto reducer = std::make_shared<BucketedReducer>(comm);
  Trainer trainer(m, c, 0.13025, reducer);
  const int64_t latent = resolution / 8;
  at::manual_seed(comm.rank());
  StepBatch b;
  b.latent_mean = at::randn({batch, 4, latent, latent});
  b.latent_logvar = at::full({batch, 4, latent, latent}, -4.0);
  std::vector<int64_t> ids{49406, 320, 1125, 539, 49408, 49409, 49407};
  ids.resize(77, 49407);
  b.input_ids_1 = at::tensor(ids, at::kLong).repeat({batch, 1});
  b.input_ids_2 = b.input_ids_1.clone();
  b.add_time_ids = at::tensor({1024.f, 1024.f, 0.f, 0.f, 1024.f, 1024.f}).repeat({batch, 1});
  b.mask = at::ones({batch, 1, latent, latent});
  for (int64_t i = 0; i < batch; ++i) b.positions.push_back(i * comm.size() + comm.rank()), b.caption_keys.push_back(0);

  std::vector<double> step_ms;
  std::vector<std::vector<double>> busy, hidden;  // per bucket, per step
  for (int64_t s = 1; s <= steps + 1; ++s) {
    comm.barrier();
    const double t0 = now();
    trainer.step(s, b);
    const double t1 = now();
    if (s == 1) continue;  // the first step builds buckets in the observed order
    step_ms.push_back((t1 - t0) * 1e3);
    const auto& timings = reducer->last_timings();
    busy.resize(timings.size());
    hidden.resize(timings.size());
    for (size_t k = 0; k < timings.size(); ++k) {
      const auto& t = timings[k];
      busy[k].push_back((t.done - t.launched) * 1e3);
      hidden[k].push_back(std::max(0.0, std::min(t.done, reducer->last_backward_end()) - t.launched) * 1e3);
    }
  }
  // One flat all-reduce of the same bytes.
  int64_t elements = 0;
  for (int64_t bytes : reducer->bucket_bytes()) elements += bytes / 4;
  at::Tensor flat = at::ones({elements});
  std::vector<double> flat_ms;
  for (int i = 0; i < 6; ++i) {
    comm.barrier();
    const double t0 = now();
    comm.all_reduce_sum(flat);
    flat_ms.push_back((now() - t0) * 1e3);
  }
  if (comm.rank() == 0) {
    std::string buckets = "[", busy_s = "[", hidden_s = "[";
    const auto sizes = reducer->bucket_bytes();
    for (size_t k = 0; k < sizes.size() && k < busy.size(); ++k) {
      const char* sep = k ? ", " : "";
      buckets += sep + std::to_string(sizes[k]);
      char v[32];
      std::snprintf(v, sizeof v, "%s%.3f", sep, median(busy[k]));
      busy_s += v;
      std::snprintf(v, sizeof v, "%s%.3f", sep, median(hidden[k]));
      hidden_s += v;
    }
    std::printf("{\"ranks\": %d, \"mode\": \"%s\", \"resolution\": %lld, \"batch\": %lld, \"step_ms\": %.2f, "
                "\"flat_allreduce_ms\": %.3f, \"bucket_bytes\": %s], \"bucket_busy_ms\": %s], \"bucket_hidden_ms\": %s]}\n",
                comm.size(), lora ? "lora" : "full", static_cast<long long>(resolution), static_cast<long long>(batch),
                median(step_ms), median(flat_ms), buckets.c_str(), busy_s.c_str(), hidden_s.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace xltune

int main(int argc, char** argv) { return xltune::bench::main_of("xltune_bench_allreduce", xltune::run, argc, argv); }
