// The machine's peak FP32 FMA throughput, for the benchmarks' FLOP floors (bench/peak.ts builds
// and runs it): every thread runs chains of independent fused multiply-adds on registers, enough
// chains to cover the FMA latency times the number of FMA pipes, for a fixed time; GFLOP/s counts
// 2 per lane per FMA. One line of JSON per ISA the CPU has (avx512, avx2), at 1 thread and at
// `threads` threads (argv[1], default: every CPU), each the best of 3 runs.
//
//   gcc -O3 -fopenmp fma_peak.c -o fma_peak && ./fma_peak 2
//
// The chains must stay in registers: the inner loop is unrolled (pragma), else the accumulators
// live on the stack and a store-to-load round trip per FMA halves the figure.
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

#define CHAINS 12
#define ROUNDS 100000

// Returns FMAs done (per lane); the result is written through `sink` so that nothing is optimized away.
__attribute__((target("avx2,fma"))) static long fmaAvx2(float* sink) {
  __m256 acc[CHAINS];
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_ps((float)c);
  for (long r = 0; r < ROUNDS; r++) {
#pragma GCC unroll 12
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  }
  __m256 s = acc[0];
  for (int c = 1; c < CHAINS; c++) s = _mm256_add_ps(s, acc[c]);
  float out[8];
  _mm256_storeu_ps(out, s);
  *sink += out[0];
  return (long)ROUNDS * CHAINS * 8;
}

__attribute__((target("avx512f"))) static long fmaAvx512(float* sink) {
  __m512 acc[CHAINS];
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_ps((float)c);
  for (long r = 0; r < ROUNDS; r++) {
#pragma GCC unroll 12
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  }
  __m512 s = acc[0];
  for (int c = 1; c < CHAINS; c++) s = _mm512_add_ps(s, acc[c]);
  *sink += _mm512_reduce_add_ps(s);
  return (long)ROUNDS * CHAINS * 16;
}

// GFLOP/s of `kernel` on `threads` threads: each repeats it for about 0.3 s; best of 3.
static double measure(long (*kernel)(float*), int threads) {
  double best = 0;
  for (int trial = 0; trial < 3; trial++) {
    long fmas = 0;
    float sink = 0;
    const double start = now();
#pragma omp parallel num_threads(threads) reduction(+ : fmas) reduction(+ : sink)
    {
      const double begun = now();
      while (now() - begun < 0.3) fmas += kernel(&sink);
    }
    const double seconds = now() - start;
    if (sink == 12345.0f) fprintf(stderr, "unlikely\n");
    const double gflops = 2.0 * fmas / seconds / 1e9;
    if (gflops > best) best = gflops;
  }
  return best;
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : omp_get_num_procs();
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    printf("{\"isa\": \"avx512\", \"threads\": 1, \"gflops\": %.1f}\n", measure(fmaAvx512, 1));
    printf("{\"isa\": \"avx512\", \"threads\": %d, \"gflops\": %.1f}\n", threads, measure(fmaAvx512, threads));
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    printf("{\"isa\": \"avx2\", \"threads\": 1, \"gflops\": %.1f}\n", measure(fmaAvx2, 1));
    printf("{\"isa\": \"avx2\", \"threads\": %d, \"gflops\": %.1f}\n", threads, measure(fmaAvx2, threads));
  }
  return 0;
}
