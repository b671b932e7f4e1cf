// xltune: see cli/command.h for the subcommands and exit codes.
#include "cli/command.h"

int main(int argc, char** argv) { return xltune::cli::run_cli(argc, argv); }
