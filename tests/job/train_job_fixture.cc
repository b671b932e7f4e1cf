#include "job/train_job_fixture.h"

#include "job/train_job.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/data_files.h"
#include "core/safetensors.h"
#include "data/image_codec.h"
#include "dist/communicator.h"
#include "dist/thread_group.h"
#include "job/checkpoint.h"
#include "job/run_hooks.h"
#include "sdxl/random_model.h"
#include "test_util.h"
#include "text/clip_tokenizer.h"
#include "train/export.h"

namespace xltune::job_test {

namespace fs = std::filesystem;

// A tiny random SDXL-shaped model with the real CLIP tokenizers, as `xltune init-model`.
void make_tiny_model(const std::string& dir) {
  const std::string vocab = clip_vocabulary_file();
  ClipTokenizer::from_bpe_file(vocab, "<|endoftext|>").write_folder(dir + "/tokenizer");
  ClipTokenizer::from_bpe_file(vocab, "!").write_folder(dir + "/tokenizer_2");
  write_random_model(dir, preset_configs("tiny"), 0);
}

// Six (or `count`) smooth random 96x72 photos in a folder.
void make_photos(const std::string& dir, int count) {
  fs::create_directories(dir);
  at::Generator g = at::detail::createCPUGenerator(5);
  for (int i = 0; i < count; ++i) {
    at::Tensor small = at::randint(0, 256, {1, 3, 6, 8}, g, at::TensorOptions().dtype(at::kFloat));
    at::Tensor big = at::upsample_bilinear2d(small, {72, 96}, false).round().clamp(0, 255).to(at::kByte);
    at::Tensor hwc = big[0].permute({1, 2, 0}).contiguous();
    cv::Mat rgb(72, 96, CV_8UC3, hwc.data_ptr());
    write_file_atomic(dir + "/photo-" + std::to_string(i) + ".png", encode_png(rgb, ChannelOrder::kRgb));
  }
}

TrainOptions tiny_run(const ScopedTempDir& dir, int64_t batch, const std::string& out) {
  TrainOptions o;
  o.model = dir / "model";
  o.input_images = dir / "photos";
  o.output_dir = dir / out;
  o.prep.resolution = 64;
  o.train_batch_size = batch;
  o.max_train_steps = 4;
  o.checkpointing_steps = 2;
  o.seed = 11;
  o.lora_rank = 4;
  o.lora_lr = 1e-3;
  o.ti_lr = 1e-3;
  o.verbose = false;
  return o;
}



// The job on hooks.size() ranks as threads, each with its hooks. A rank that throws aborts the
// group, as `xltune train` does (abort_job), so that the others end with an error instead of
// waiting for it forever.
RankResults run_on_thread_ranks(const TrainOptions& o, std::vector<FakeHooks> hooks) {
  const int world = static_cast<int>(hooks.size());
  const std::vector<std::shared_ptr<Communicator>> ranks = make_thread_group(world);
  RankResults out{std::vector<TrainJobReport>(world), std::vector<std::string>(world)};
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        out.reports[r] = run_train_job(o, nlohmann::ordered_json::object(), *ranks[r], hooks[r]);
      } catch (const std::exception& e) {
        out.errors[r] = e.what();
        try {
          ranks[r]->abort(1);
        } catch (const std::exception&) {  // the thread group's abort throws once it has woken the others
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

std::map<std::string, at::Tensor> tensors_of(const std::string& path) {
  std::map<std::string, at::Tensor> out;
  for (auto& [name, t] : load_safetensors(path)) out[name] = t;
  return out;
}

// The largest difference between two runs' tensors of the same names, each of its largest value.
double worst_relative(const std::map<std::string, at::Tensor>& a, const std::map<std::string, at::Tensor>& b,
                      const std::string& prefix) {
  double worst = 0;
  for (const auto& [name, t] : a) {
    if (name.rfind(prefix, 0) != 0) continue;
    EXPECT_TRUE(b.count(name)) << name;
    if (!b.count(name)) continue;
    const double largest = std::max(t.abs().max().item<double>(), 1e-30);
    worst = std::max(worst, (t.to(at::kDouble) - b.at(name).to(at::kDouble)).abs().max().item<double>() / largest);
  }
  return worst;
}

// metrics.jsonl by step.
std::map<int64_t, nlohmann::json> metrics_of(const std::string& path) {
  std::map<int64_t, nlohmann::json> out;
  std::istringstream lines(read_file(path));
  for (std::string line; std::getline(lines, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    // The key first: json's operator= takes its argument by value, and C++17 evaluates the right
    // side of an assignment first, so `out[j["step"]...] = std::move(j)` reads a moved-from j.
    const int64_t step = j["step"].get<int64_t>();
    out[step] = std::move(j);
  }
  return out;
}

}  // namespace xltune::job_test
