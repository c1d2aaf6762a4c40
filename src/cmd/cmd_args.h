/* Option values for the subcommands: each reads argv[*i + 1], advances *i, and on a bad or
 * missing value prints why to stderr and returns false. */
#ifndef CP_CMD_ARGS_H
#define CP_CMD_ARGS_H

#include <stdbool.h>
#include <stdint.h>

bool args_u64(int argc, char **argv, int *i, unsigned long long max, unsigned long long *out);
bool args_u32(int argc, char **argv, int *i, uint32_t min, uint32_t max, uint32_t *out);
/* A fraction in [0, 1] with up to 6 decimals, as parts per million: no floating point. */
bool args_ppm(int argc, char **argv, int *i, uint32_t *out_ppm);

#endif
