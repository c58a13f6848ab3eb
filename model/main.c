/* main.c: the `crisp` executable (see cli.h). */
#include "cli.h"

int main(int argc, char **argv) { return crisp_cli(argc, argv); }
