// zyolo: the one binary. Everything it does is in the zyolo_core library; see src/cli.cpp.
#include "cli.hpp"

int main(int argc, char** argv) { return zyolo::cli_main(argc, argv); }
