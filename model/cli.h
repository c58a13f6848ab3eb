/* cli.h: the `crisp` command (train | eval | predict). Exit status: 0 success, 1 a
 * failure while running, 2 a usage/config/data error (with a message naming the
 * flag, file or key), 130 training interrupted (a checkpoint was saved). */
#ifndef CRISP_MODEL_CLI_H
#define CRISP_MODEL_CLI_H

int crisp_cli(int argc, char **argv);

#endif
