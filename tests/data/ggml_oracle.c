// ggml oracle for the quant fixtures that the `gguf` package cannot make: the reference
// quantizers it lacks (Q8_1, Q8_K, Q2_K..Q6_K) and ggml's generic (non-SIMD) vec_dot
// results. It links llama.cpp's own ggml-quants.c and ggml-cpu-quants.c, built for plain
// x86-64 (SSE2 only, so every vec_dot takes ggml's scalar path) with -ffp-contract=off (no
// FMA contraction: the operations as the C source writes them).
//
// Build and run (from the repository root; LLAMA = a llama.cpp checkout, e.g. the snapshot
// ggml used for weft, c392e50 of 2025-02-20):
//
//   I="-I$LLAMA/ggml/include -I$LLAMA/ggml/src -I$LLAMA/ggml/src/ggml-cpu"
//   F="-O2 -march=x86-64 -ffp-contract=off"
//   gcc $F $I -o /tmp/ggml_oracle tests/data/ggml_oracle.c \
//       $LLAMA/ggml/src/ggml-quants.c $LLAMA/ggml/src/ggml-cpu/ggml-cpu-quants.c -lm
//   /tmp/ggml_oracle tests/data/quant
//
// Output: files in the format documented in gen_quant_fixtures.py:
//   quant_<type>_ggml.bin    kind 1: f32 input, then the *_ref quantizer's blocks
//   vecdot_<type>_ggml.bin   kind 2: x blocks (type), y blocks (its vec_dot type), f32 result
// Inputs come from a fixed xorshift stream using only + - * /, so the files are identical on
// every machine and compiler that honours IEEE f32 and -ffp-contract=off.

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-common.h"
#include "ggml-cpu-quants.h"
#include "ggml-quants.h"

// --- the few ggml symbols these two files use, so they link without the rest of ggml ---

float ggml_table_f32_f16[1 << 16];

void ggml_abort(const char * file, int line, const char * fmt, ...) {
    fprintf(stderr, "ggml_abort at %s:%d\n", file, line);
    abort();
}
size_t ggml_row_size(enum ggml_type type, int64_t ne) { (void) type; (void) ne; abort(); }
const char * ggml_type_name(enum ggml_type type) { (void) type; return "?"; }
size_t ggml_type_size(enum ggml_type type) { (void) type; abort(); }

// Exact IEEE binary16 -> binary32, to fill ggml's lookup table.
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t) (h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {  // subnormal: normalise
        exp = 113;
        while (!(man & 0x400)) { man <<= 1; exp--; }
        bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// --- deterministic inputs ---

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static float uniform(void) {  // [-1, 1)
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float) (rng_state >> 40) / 8388608.0f - 1.0f;
}

// n values: mixed scales and shapes per 32-block, edge blocks first.
static void make_input(float * x, int n) {
    for (int b = 0; b < n / 32; ++b) {
        float * v = x + 32 * b;
        const float scale = 0.001f + (uniform() + 1.0f) * 0.5f;  // (0.001, 1.001)
        const float offset = (b % 3 == 0) ? 0.0f : uniform() * scale;
        for (int i = 0; i < 32; ++i) {
            float u = uniform();
            v[i] = offset + scale * (b % 2 ? u * u * u : u);
        }
    }
    for (int i = 0; i < 32; ++i) x[i] = 0.0f;                   // all-zero block
    for (int i = 32; i < 64; ++i) x[i] = 0.75f;                 // constant block
    for (int i = 64; i < 96; ++i) x[i] = (float) (i - 80) / 4;  // ties
}

static void write_fixture(const char * dir, const char * name, uint32_t kind, uint32_t type, uint32_t n,
                          const void * a, size_t na, const void * b, size_t nb, const void * c, size_t nc) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE * f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    const uint32_t hdr[4] = { 1, kind, type, n };  // little-endian host assumed (x86-64)
    fwrite("WQFX", 1, 4, f);
    fwrite(hdr, 4, 4, f);
    fwrite(a, 1, na, f);
    fwrite(b, 1, nb, f);
    if (c) fwrite(c, 1, nc, f);
    fclose(f);
    printf("%s (%u elements)\n", path, n);
}

typedef void (*quantize_fn)(const float *, void *, int64_t);
typedef void (*vec_dot_fn)(int, float *, size_t, const void *, size_t, const void *, size_t, int);

struct format {
    const char * name;
    uint32_t type, block, size;
    quantize_fn quantize;  // the *_ref quantizer
    uint32_t dot_type;     // index into formats[] of its vec_dot type, or -1
    vec_dot_fn vec_dot;
};

#define Q(f) ((quantize_fn) (f))
enum { I_Q8_0, I_Q8_1, I_Q8_K };
static const struct format formats[] = {
    [I_Q8_0] = { "q8_0", 8, 32, sizeof(block_q8_0), Q(quantize_row_q8_0_ref), I_Q8_0, ggml_vec_dot_q8_0_q8_0 },
    [I_Q8_1] = { "q8_1", 9, 32, sizeof(block_q8_1), Q(quantize_row_q8_1_ref), (uint32_t) -1, NULL },
    [I_Q8_K] = { "q8_k", 15, 256, sizeof(block_q8_K), Q(quantize_row_q8_K_ref), (uint32_t) -1, NULL },
    { "q4_0", 2, 32, sizeof(block_q4_0), Q(quantize_row_q4_0_ref), I_Q8_0, ggml_vec_dot_q4_0_q8_0 },
    { "q4_1", 3, 32, sizeof(block_q4_1), Q(quantize_row_q4_1_ref), I_Q8_1, ggml_vec_dot_q4_1_q8_1 },
    { "q5_0", 6, 32, sizeof(block_q5_0), Q(quantize_row_q5_0_ref), I_Q8_0, ggml_vec_dot_q5_0_q8_0 },
    { "q5_1", 7, 32, sizeof(block_q5_1), Q(quantize_row_q5_1_ref), I_Q8_1, ggml_vec_dot_q5_1_q8_1 },
    { "q2_k", 10, 256, sizeof(block_q2_K), Q(quantize_row_q2_K_ref), I_Q8_K, ggml_vec_dot_q2_K_q8_K },
    { "q3_k", 11, 256, sizeof(block_q3_K), Q(quantize_row_q3_K_ref), I_Q8_K, ggml_vec_dot_q3_K_q8_K },
    { "q4_k", 12, 256, sizeof(block_q4_K), Q(quantize_row_q4_K_ref), I_Q8_K, ggml_vec_dot_q4_K_q8_K },
    { "q5_k", 13, 256, sizeof(block_q5_K), Q(quantize_row_q5_K_ref), I_Q8_K, ggml_vec_dot_q5_K_q8_K },
    { "q6_k", 14, 256, sizeof(block_q6_K), Q(quantize_row_q6_K_ref), I_Q8_K, ggml_vec_dot_q6_K_q8_K },
};

int main(int argc, char ** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
        return 2;
    }
    for (int i = 0; i < (1 << 16); ++i) ggml_table_f32_f16[i] = half_to_float((uint16_t) i);

    enum { N = 512 };  // two super-blocks, sixteen 32-blocks
    static float x[N], y[N];
    static uint8_t qx[N * 2], qy[N * 2];
    char name[256];
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; ++i) {
        const struct format * f = &formats[i];
        // Quantizers gguf-py lacks (the 32-wide weight formats are covered from gguf-py).
        if (f->block == 256 || f->type == 9) {
            make_input(x, N);
            f->quantize(x, qx, N);
            snprintf(name, sizeof name, "quant_%s_ggml.bin", f->name);
            write_fixture(argv[1], name, 1, f->type, N, x, sizeof x, qx, N / f->block * f->size, NULL, 0);
        }
        if (f->vec_dot) {
            const struct format * g = &formats[f->dot_type];
            make_input(x, N);
            make_input(y, N);
            f->quantize(x, qx, N);
            g->quantize(y, qy, N);
            float s = 0.0f;
            f->vec_dot(N, &s, 0, qx, 0, qy, 0, 1);
            snprintf(name, sizeof name, "vecdot_%s_ggml.bin", f->name);
            write_fixture(argv[1], name, 2, f->type, N, qx, N / f->block * f->size, qy, N / g->block * g->size, &s, 4);
        }
    }
    return 0;
}
