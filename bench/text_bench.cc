// The C++ half of bench/text.py: CLIP tokenizer throughput and text-encoder forward time, on
// the same inputs as the Python half, which prints the ratios.
//
//   xltune_bench_text tokenize TOKENIZER_DIR CAPTIONS_FILE REPEATS     (one caption per line)
//   xltune_bench_text encode MODEL_DIR BATCH REPEATS
// Prints one JSON line with the best time of REPEATS runs.
#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "core/error.h"
#include "text/clip_loading.h"
#include "text/clip_tokenizer.h"

namespace {
using xltune::bench::now;
}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s tokenize DIR CAPTIONS REPEATS | encode MODEL_DIR BATCH REPEATS\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  const int repeats = std::stoi(argv[4]);
  try {
    double best = 1e30;
    if (mode == "tokenize") {
      std::vector<std::string> captions;
      std::ifstream in(argv[3]);
      for (std::string line; std::getline(in, line);) captions.push_back(line);
      size_t ids = 0;
      for (int r = 0; r < repeats; ++r) {
        // A fresh tokenizer each run: the piece cache starts empty, as Python's does.
        xltune::ClipTokenizer tok = xltune::ClipTokenizer::from_folder(argv[2]);
        double start = now();
        ids = 0;
        for (const auto& c : captions) ids += tok.encode(c).size();
        best = std::min(best, now() - start);
      }
      std::printf("{\"impl\": \"xltune\", \"seconds\": %.6f, \"captions\": %zu, \"ids\": %zu}\n", best,
                  captions.size(), ids);
    } else if (mode == "encode") {
      at::set_num_threads(2);
      xltune::ClipTextModel model = xltune::load_clip_text_model(argv[2]);
      const int64_t batch = std::stoll(argv[3]);
      at::Tensor ids = at::randint(1, 49406, {batch, 77}, at::kLong);
      ids.select(1, 0).fill_(49406);
      ids.select(1, 76).fill_(49407);
      at::NoGradGuard no_grad;
      model->forward(ids);  // warm-up
      for (int r = 0; r < repeats; ++r) {
        double start = now();
        model->forward(ids);
        best = std::min(best, now() - start);
      }
      std::printf("{\"impl\": \"xltune\", \"seconds\": %.6f, \"batch\": %lld}\n", best, static_cast<long long>(batch));
    } else {
      std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
      return 2;
    }
  } catch (const std::exception& e) {  // c10::Error too (a CUDA error): one message, never std::terminate
    std::fprintf(stderr, "xltune_bench_text: %s\n", e.what());
    return 1;
  }
  return 0;
}
