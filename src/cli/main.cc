// xltune: see cli/command.h for the subcommands and exit codes.
#include <cstring>

#include "cli/command.h"
#include "job/stop_signal.h"

namespace {

// A stop signal (SIGTERM, SIGUSR1) that reaches `xltune train` while its libraries initialise
// (libtorch's initialisers take about 0.2 s) must not kill it by the signal: the batch scripts
// requeue only on exit 75 (job/stop_signal.h). The executable's .preinit_array runs once the
// dynamic loader has mapped and relocated the libraries (a few milliseconds after exec), before
// any library's initialiser; glibc passes it main's arguments. The handler only sets a flag, so
// it needs nothing initialised. Only for `train`: the other commands keep the default, and die.
void install_stop_handlers_for_train(int argc, char** argv, char** /*envp*/) {
  if (argc > 1 && argv[1] != nullptr && std::strcmp(argv[1], "train") == 0) xltune::install_stop_handlers();
}
__attribute__((section(".preinit_array"), used)) void (*preinit_stop_handlers)(int, char**, char**) =
    install_stop_handlers_for_train;

}  // namespace

int main(int argc, char** argv) { return xltune::cli::run_cli(argc, argv); }
