#include <ATen/Context.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/headeronly/version.h>

#include <boost/program_options.hpp>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "data/build_info.h"
#include "dist/build_info.h"

namespace po = boost::program_options;

namespace xltune::cli {

namespace {
std::string cuda_runtime_version() {
  if (!at::hasCUDA()) return "";
  long v = at::detail::getCUDAHooks().versionCUDART();
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}
}  // namespace

int version_command(const std::vector<std::string>& args) {
  po::options_description options("Options");
  options.add_options()("help,h", "show this help")("json", "print one JSON object, for scripts");
  po::variables_map vm;
  if (!parse_options(args, options, {}, vm)) {
    std::cout << usage("version", "[--json]", "Prints the versions xltune was built with and finds at run time.",
                       options);
    return 0;
  }
  const std::string torch_version = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) +
                                    "." + std::to_string(TORCH_VERSION_PATCH);
  const std::string cuda = cuda_runtime_version();
  const std::string nccl = nccl_version();
  nlohmann::ordered_json v;
  v["xltune"] = XLTUNE_VERSION;
  v["libtorch"] = torch_version;
  v["cuda"] = cuda.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(cuda);
  v["cuda_devices"] = at::hasCUDA() ? at::detail::getCUDAHooks().getNumGPUs() : 0;
  v["mpi"] = mpi_library_version();
  v["nccl"] = nccl.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(nccl);
  v["opencv"] = opencv_version();
  v["libarchive"] = libarchive_version();
  v["hdf5"] = hdf5_version();
  if (vm.count("json")) {
    std::cout << v.dump(2) << "\n";
    return 0;
  }
  std::cout << "xltune " << XLTUNE_VERSION << "\n"
            << "libtorch   " << torch_version << "\n"
            << "CUDA       " << (cuda.empty() ? "no (CPU-only libtorch or no driver)" : cuda + ", " +
                                 std::to_string(v["cuda_devices"].get<int>()) + " device(s)") << "\n"
            << "MPI        compiled in: " << v["mpi"].get<std::string>() << "\n"
            << "NCCL       " << (nccl.empty() ? "not compiled in" : "compiled in: " + nccl) << "\n"
            << "OpenCV     " << opencv_version() << "\n"
            << "libarchive " << libarchive_version() << "\n"
            << "HDF5       " << hdf5_version() << "\n";
  return 0;
}

}  // namespace xltune::cli
