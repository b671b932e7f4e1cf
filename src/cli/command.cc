#include "cli/command.h"

#include <algorithm>
#include <chrono>

#include <boost/program_options.hpp>
#include <c10/util/Exception.h>
#include <iostream>

#include "core/log.h"

namespace po = boost::program_options;

namespace xltune::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"version", "versions of xltune, libtorch, CUDA, MPI, NCCL and the data libraries", version_command},
      {"inspect", "list the tensors of a safetensors file or sharded model (dtype, shape, totals)", inspect_command},
      {"tokenize", "show the CLIP token ids of a text, as SDXL's tokenizers produce them", tokenize_command},
      {"preprocess", "training images (zip/tar/folder) to HDF5 shards: decode, mask, crop, resize, caption",
       preprocess_command},
      {"train", "fine-tune SDXL on a zip of photos (LoRA or full, with pivotal tuning): trained_model.tar",
       train_command},
      {"export", "rebuild trained_model.tar and its files from a trainer state", export_command},
      {"mask", "the CLIPSeg mask of an image for a prompt (as --mask_target_prompts makes it)", mask_command},
      {"caption", "BLIP captions of images (as preprocessing writes them for photos without one)", caption_command},
      {"upscale", "Swin2SR x4 of an image (as preprocessing upscales crops smaller than --resolution)", upscale_command},
      {"generate", "make images with a model and a trained LoRA (txt2img, img2img, inpainting)", generate_command},
      {"init-model",
       "write a random model folder (SDXL tiny or small; tiny CLIPSeg, BLIP, Swin2SR), for tests and trials",
       init_model_command},
  };
  return table;
}

namespace {
void print_program_help(std::ostream& out) {
  out << "xltune — fine-tunes SDXL (LoRA or full, with pivotal tuning) from one GPU to a cluster.\n\n"
         "Usage: xltune COMMAND [OPTIONS]\n"
         "       xltune COMMAND --help     options of one command\n\n"
         "Commands:\n";
  for (const auto& c : commands()) {
    std::string name = c.name;
    name.resize(12, ' ');
    out << "  " << name << c.summary << "\n";
  }
  out << "\nEnvironment: XLTUNE_LOG_LEVEL=debug|info|warn|error sets how much is logged.\n";
}

std::string first_line(const std::string& text) {
  auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}
}  // namespace

bool parse_options(const std::vector<std::string>& args, const po::options_description& options,
                   const po::positional_options_description& positional, po::variables_map& vm) {
  std::vector<std::string> rest(args.begin() + 1, args.end());
  try {
    po::store(po::command_line_parser(rest).options(options).positional(positional).run(), vm);
    if (vm.count("help")) return false;
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(str(e.what(), " (see xltune ", args[0], " --help)"), __FILE__, __LINE__);
  }
  return true;
}

std::string usage(const std::string& name, const std::string& synopsis, const std::string& description,
                  const po::options_description& options) {
  std::ostringstream out;
  out << "Usage: xltune " << name << " " << synopsis << "\n\n" << description << "\n\n" << options;
  return out.str();
}

double fastest_of(int runs, const std::function<void()>& work) {
  double best = 0;
  for (int run = 0; run < runs; ++run) {
    const auto start = std::chrono::steady_clock::now();
    work();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = run == 0 ? s : std::min(best, s);
  }
  return best;
}

std::string with_commas(uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

int run_cli(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    print_program_help(std::cout);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version") args[0] = "version";
  const Command* command = nullptr;
  for (const auto& c : commands())
    if (args[0] == c.name) command = &c;
  if (command == nullptr) {
    std::cerr << "xltune: unknown command '" << args[0] << "' (see xltune --help)\n";
    return 2;
  }
  const std::string prefix = std::string("xltune ") + command->name + ": ";
  try {
    return command->run(args);
  } catch (const UsageError& e) {
    std::cerr << prefix << "usage error: " << first_line(e.what()) << "\n";
    return 2;
  } catch (const Error& e) {
    std::cerr << prefix << "error: " << first_line(e.what()) << "\n";
    log_debug("raised at ", e.where());
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << prefix << "error: " << first_line(e.what_without_backtrace()) << "\n";
    return 1;
  } catch (const std::bad_alloc&) {
    std::cerr << prefix << "error: out of memory\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << prefix << "error: " << first_line(e.what()) << "\n";
    return 1;
  }
}

Placement preprocess_placement(const std::string& device_option) {
  const Placement p = decide_placement(device_option, 0, PlacementUse::kPreprocess);
  apply_placement(p);
  return p;
}

}  // namespace xltune::cli
