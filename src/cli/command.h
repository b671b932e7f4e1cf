// The `xltune` program: one binary, subcommands. Each subcommand is a Command in the table
// of command.cc; it parses its own options with Boost.Program_options and returns an exit
// code. Errors reach run_cli as exceptions and leave as one line on stderr:
//   exit 0  done
//   exit 1  the work failed (bad input file, failed I/O): xltune::Error
//   exit 2  the command line is wrong: UsageError (unknown option, bad value, missing argument)
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/placement.h"

namespace boost::program_options {
class options_description;
class positional_options_description;
class variables_map;
}  // namespace boost::program_options

namespace xltune::cli {

class UsageError : public Error {
 public:
  using Error::Error;
};

#define XLTUNE_USAGE_CHECK(cond, ...) \
  do {                                \
    if (!(cond)) throw ::xltune::cli::UsageError(::xltune::str(__VA_ARGS__), __FILE__, __LINE__); \
  } while (0)

struct Command {
  const char* name;
  const char* summary;
  // argv[0] is the subcommand's name.
  int (*run)(const std::vector<std::string>& args);
};

const std::vector<Command>& commands();
// Where the preprocessing models of `mask`, `caption`, `upscale` and `preprocess` run for
// --device, applied (Note [One placement]: as `xltune train` runs them).
Placement preprocess_placement(const std::string& device_option);
int run_cli(int argc, char** argv);

// Parses args[1..] into `vm`; Boost's errors become UsageError naming the option. Returns
// false when --help was given (the caller prints usage and returns 0).
bool parse_options(const std::vector<std::string>& args, const boost::program_options::options_description& options,
                   const boost::program_options::positional_options_description& positional,
                   boost::program_options::variables_map& vm);
// "Usage: xltune NAME SYNOPSIS" + description + the options table.
std::string usage(const std::string& name, const std::string& synopsis, const std::string& description,
                  const boost::program_options::options_description& options);

// Runs `work` `runs` times; the seconds of the fastest run (--repeat of mask and upscale: in a
// benchmark the first run of a process also pays for warm-up).
double fastest_of(int runs, const std::function<void()>& work);

// 1234567 -> "1,234,567"
std::string with_commas(uint64_t n);

int version_command(const std::vector<std::string>& args);
int inspect_command(const std::vector<std::string>& args);
int tokenize_command(const std::vector<std::string>& args);
int preprocess_command(const std::vector<std::string>& args);
int train_command(const std::vector<std::string>& args);
int init_model_command(const std::vector<std::string>& args);
int export_command(const std::vector<std::string>& args);
int generate_command(const std::vector<std::string>& args);
int mask_command(const std::vector<std::string>& args);
int caption_command(const std::vector<std::string>& args);
int upscale_command(const std::vector<std::string>& args);

}  // namespace xltune::cli
