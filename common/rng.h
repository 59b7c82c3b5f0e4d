/* Counter-based randomness: every draw is a pure function of its inputs,
 * so the sample order and initial weights can be recomputed anywhere
 * (any rank, after a resume) without carrying generator state around. */
#ifndef RINGMASTER_RNG_H
#define RINGMASTER_RNG_H

#include <stdint.h>

/* splitmix64 finalizer: a bijective 64-bit mixer. */
static inline uint64_t rm_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static inline uint64_t rm_key(uint64_t a, uint64_t b)
{
    return rm_mix64(a ^ rm_mix64(b + 0x632be59bd9b4e019ULL));
}

/* A small sequential generator for loops seeded from a key. */
typedef struct rm_rng {
    uint64_t state;
} rm_rng;

static inline uint64_t rm_rng_next(rm_rng *r)
{
    r->state += 0x9e3779b97f4a7c15ULL;
    uint64_t x = r->state;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Uniform in [0, n) without modulo bias (Lemire's method). n > 0. */
static inline uint64_t rm_rng_below(rm_rng *r, uint64_t n)
{
    for (;;) {
        uint64_t x = rm_rng_next(r);
        unsigned __int128 m = (unsigned __int128)x * n;
        uint64_t low = (uint64_t)m;
        if (low >= n || low >= (uint64_t)(-n) % n)
            return (uint64_t)(m >> 64);
    }
}

/* Uniform float in [0, 1). */
static inline double rm_rng_uniform(rm_rng *r)
{
    return (double)(rm_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

#endif
