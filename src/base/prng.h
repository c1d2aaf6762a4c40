/* A small deterministic generator (splitmix64) for tests, benchmarks and the simulator:
 * every run is reproducible from its seed. Not for anything secret. */
#ifndef CP_PRNG_H
#define CP_PRNG_H

#include <stdint.h>

typedef struct prng {
    uint64_t state;
} prng_t;

static inline uint64_t prng_next(prng_t *r) {
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n) for n > 0 (Lemire's multiply-shift; the bias is below 2^-32 for the
 * ranges used here). */
static inline uint64_t prng_below(prng_t *r, uint64_t n) {
    return (uint64_t)(((unsigned __int128)prng_next(r) * n) >> 64);
}

/* True with probability ppm / 1e6. */
static inline int prng_chance_ppm(prng_t *r, uint32_t ppm) {
    return prng_below(r, 1000000) < ppm;
}

#endif
