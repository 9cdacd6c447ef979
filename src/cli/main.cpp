// zyolo: the one binary. Everything it does is in the zyolo_core library; see src/cli/cli.cpp.
#include "src/cli/cli.hpp"

int main(int argc, char** argv) { return zyolo::cli_main(argc, argv); }
