// Collective size sweep (issue 20): all-reduce, reduce-scatter and all-gather of fp32 and bf16
// buffers from 2^MIN to 2^MAX bytes, through the communicator the trainer's gradients would use:
// NCCL when this build has it and the ranks have GPUs, else MPI on CPU ranks. The curves feed
// bench/scaling_model.py --measured (bench/allreduce.py --sweep writes the file).
//
//   mpirun -np N xltune_bench_collectives [--device auto|cpu|cuda] [--min-log2 10] [--max-log2 26] [--reps 5]
//   (core-only builds, no MPI: one process per GPU with RANK, WORLD_SIZE, LOCAL_RANK set and
//    --id-file PATH on storage every rank sees, for NCCL's unique id)
//
// Per size: one untimed call, then --reps repetitions of `inner` calls back to back (more for
// small sizes, so that a repetition is not one clock tick), each call waited for before the next
// is started, as the reducer runs one bucket's collective at a time; a repetition's time is the
// mean over the ranks of (its wall time / inner), from a one-value all-reduce that lines the ranks
// up (and a device synchronisation on GPUs). The median over repetitions is printed. bf16 sums go through
// start_all_reduce_sum_bf16 / start_reduce_scatter_sum_bf16, xltune's own path: native on NCCL,
// an fp32 copy on MPI (Note [bf16 gradient reduction]), so an MPI bf16 curve is fp32's bytes
// plus two casts, not half the time.
//
// Prints (rank 0) one JSON line per collective and dtype: {"collective", "dtype", "transport",
// "ranks", "points": [{"bytes", "seconds", "busbw_gbs"}]}. bytes is the whole buffer (the
// all-reduced tensor; the reduce-scatter's input; the all-gather's output), busbw as nccl-tests
// define it: bytes / seconds times 2 (W-1)/W for all-reduce, (W-1)/W for the other two.
#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.h"
#include "core/check.h"
#include "dist/communicator.h"
#include "dist/world.h"
#ifdef XLTUNE_BENCH_MPI
#include "dist/mpi_communicator.h"
#endif
#ifdef XLTUNE_HAVE_NCCL
#include "dist/nccl_communicator.h"
#endif
#ifdef XLTUNE_HAVE_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace xltune {
namespace {

using bench::now;

using bench::median;

struct SweepOptions {
  std::string device = "auto";
  int min_log2 = 10, max_log2 = 26, reps = 5;
  std::string id_file;
};

SweepOptions parse(int argc, char** argv) {
  SweepOptions o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    XLTUNE_CHECK(i + 1 < argc, "xltune_bench_collectives: ", a, " needs a value");
    const std::string value = argv[++i];
    if (a == "--device") o.device = value;
    else if (a == "--min-log2") o.min_log2 = std::stoi(value);
    else if (a == "--max-log2") o.max_log2 = std::stoi(value);
    else if (a == "--reps") o.reps = std::stoi(value);
    else if (a == "--id-file") o.id_file = value;
    else XLTUNE_FAIL("xltune_bench_collectives: unknown option ", a);
  }
  XLTUNE_CHECK(o.min_log2 >= 4 && o.min_log2 <= o.max_log2 && o.max_log2 <= 30, "--min-log2/--max-log2: 4 <= min <= max <= 30");
  XLTUNE_CHECK(o.reps >= 1, "--reps must be at least 1");
  return o;
}

// The ranks' communicators: the host one (MPI, or none in core-only builds) and the one the
// collectives run on (NCCL on GPUs, else the host one).
struct Comms {
  std::unique_ptr<Communicator> host;
  std::unique_ptr<Communicator> device_comm;
  Communicator* comm = nullptr;
  at::Device device{at::kCPU};
  at::Tensor one_value;  // for align()
};

Comms make_comms(const SweepOptions& o) {
  Comms c;
  const WorldInfo world = world_from_process_environment();
#ifdef XLTUNE_BENCH_MPI
  c.host = std::make_unique<MpiCommunicator>();
#else
  if (world.size == 1) c.host = std::make_unique<SingleProcessCommunicator>();
#endif
  const bool want_cuda = o.device == "cuda" || (o.device == "auto" && torch::cuda::is_available());
  XLTUNE_CHECK(o.device == "auto" || o.device == "cpu" || o.device == "cuda", "--device ", o.device, ": auto, cpu or cuda");
  if (want_cuda) {
#ifdef XLTUNE_HAVE_NCCL
    XLTUNE_CHECK(torch::cuda::is_available(), "--device cuda: no usable CUDA device");
    const int count = static_cast<int>(torch::cuda::device_count());
    c.device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(world.local_rank % count));
    if (c.host) {
      c.device_comm = std::make_unique<NcclCommunicator>(*c.host, c.device);
    } else {
      XLTUNE_CHECK(!o.id_file.empty(), "NCCL without MPI needs --id-file PATH on storage every rank sees");
      c.device_comm = std::make_unique<NcclCommunicator>(world.rank, world.size, c.device, o.id_file);
    }
    c.comm = c.device_comm.get();
    c.one_value = at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(c.device));
    return c;
#else
    XLTUNE_CHECK(o.device == "auto", "--device cuda: this build has no NCCL (configure with -DXLTUNE_WITH_NCCL=on)");
#endif
  }
  XLTUNE_CHECK(c.host != nullptr, "no MPI in this build (core-only) and no NCCL: nothing to measure on ", world.size,
               " ranks");
  c.comm = c.host.get();
  c.one_value = at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(c.device));
  return c;
}

void synchronize(const at::Device& device) {
#ifdef XLTUNE_HAVE_CUDA
  if (device.is_cuda()) c10::cuda::device_synchronize();
#else
  (void)device;
#endif
}

// Lines the ranks up to within one small collective before a timed repetition: the
// communicators' barrier sleeps between polls (5 ms on MPI), which would leave the ranks that far
// apart; a waited all-reduce does not sleep.
void align(Comms& c) {
  c.comm->all_reduce_sum(c.one_value);
  synchronize(c.device);
}

using Start = std::function<std::unique_ptr<CommWork>()>;

// Seconds per call: the median over repetitions of the ranks' mean.
double time_collective(Comms& c, const Start& start, int inner, int reps) {
  start()->wait();
  synchronize(c.device);
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    align(c);
    const double t0 = now();
    for (int i = 0; i < inner; ++i) start()->wait();
    synchronize(c.device);
    const double per_call = (now() - t0) / inner;
    times.push_back(all_reduce_sum_values(*c.comm, {per_call}, c.device)[0] / c.comm->size());
  }
  return median(times);
}

struct Curve {
  std::string collective, dtype;
  std::vector<std::pair<int64_t, double>> points;  // bytes, seconds
};

Curve sweep(Comms& c, const SweepOptions& o, const std::string& collective, at::ScalarType dtype) {
  Curve curve{collective, dtype == at::kBFloat16 ? "bf16" : "fp32", {}};
  const int64_t w = c.comm->size(), elem = dtype == at::kBFloat16 ? 2 : 4;
  const auto options = at::TensorOptions().dtype(dtype).device(c.device);
  Communicator& comm = *c.comm;
  for (int k = o.min_log2; k <= o.max_log2; ++k) {
    // Zeros: sums of zeros stay zeros however often they run (no overflow, no denormals).
    const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << k) / elem / w), numel = chunk * w;
    const at::Tensor whole = at::zeros({numel}, options);
    const at::Tensor part = whole.narrow(0, comm.rank() * chunk, chunk);  // in place, as the reducers run
    Start start;
    if (collective == "all_reduce") {
      start = dtype == at::kBFloat16 ? Start([&] { return start_all_reduce_sum_bf16(comm, whole); })
                                     : Start([&] { return comm.start_all_reduce_sum(whole); });
    } else if (collective == "reduce_scatter") {
      start = dtype == at::kBFloat16 ? Start([&] { return start_reduce_scatter_sum_bf16(comm, whole, part); })
                                     : Start([&] { return comm.start_reduce_scatter_sum(whole, part); });
    } else {
      start = [&] { return comm.start_all_gather(part, whole); };
    }
    const int64_t bytes = numel * elem;
    const int inner = static_cast<int>(std::clamp<int64_t>((int64_t{1} << 22) / bytes, 1, 32));
    curve.points.emplace_back(bytes, time_collective(c, start, inner, o.reps));
  }
  return curve;
}

void print_curve(const Curve& curve, const Communicator& comm) {
  const double w = comm.size();
  const double factor = curve.collective == "all_reduce" ? 2 * (w - 1) / w : (w - 1) / w;
  std::string points;
  for (const auto& [bytes, seconds] : curve.points) {
    char p[160];
    std::snprintf(p, sizeof p, "%s{\"bytes\": %lld, \"seconds\": %.9g, \"busbw_gbs\": %.6g}", points.empty() ? "" : ", ",
                  static_cast<long long>(bytes), seconds, seconds > 0 ? bytes / seconds * factor / 1e9 : 0.0);
    points += p;
  }
  std::printf("{\"collective\": \"%s\", \"dtype\": \"%s\", \"transport\": \"%s\", \"ranks\": %d, \"points\": [%s]}\n",
              curve.collective.c_str(), curve.dtype.c_str(), comm.name().c_str(), comm.size(), points.c_str());
  std::fflush(stdout);
}

int run(int argc, char** argv) {
  const SweepOptions o = parse(argc, argv);
  Comms c = make_comms(o);
  for (const char* collective : {"all_reduce", "reduce_scatter", "all_gather"}) {
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      const Curve curve = sweep(c, o, collective, dtype);
      if (c.comm->rank() == 0) print_curve(curve, *c.comm);
    }
  }
  return 0;
}

}  // namespace
}  // namespace xltune

int main(int argc, char** argv) { return xltune::bench::main_of("xltune_bench_collectives", xltune::run, argc, argv); }
