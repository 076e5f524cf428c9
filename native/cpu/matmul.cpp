// matmul (core/matmul.h): the entry point. Impl::Reference runs the scalar spec
// (core/matmul_reference.cpp); Impl::Fast packs panels and runs the microkernel of the active
// SIMD level (matmul_kernels.h) on the thread pool, in the loop order of BLIS (Van Zee and van de
// Geijn, "BLIS: A Framework for Rapidly Instantiating BLAS Functionality", 2015), with the K
// blocks of B packed all at once:
//
//   each thread, its own contiguous range of MR-row panels of C (NR-column panels if N > M):
//     for jc over its columns in blocks of NC        (NC: K x NC floats fit in 4 MiB)
//       pack B[:, jc..] -> packedB, per KC block NR-wide panels [kc, NR]    (per thread)
//       for ic over its rows in blocks of MC
//         for pc over K in blocks of KC, in order
//           pack A[ic.., pc..] -> packedA [MC, KC] as MR-tall panels         (per thread)
//           for jr over the block in NR, for ir over it in MR: the MR x NR microkernel
//
// Every C element is therefore: C (+)= the sum of K block 0, then C += the sum of block 1, ...,
// each block's sum formed by one microkernel lane. Which thread computes it and where its tile
// falls change nothing, so the bits depend on KC and the SIMD level only, never on the thread
// count. The threads meet once per product. A batch of many small matrices (attention's
// per-head products) is split over threads a whole matrix at a time instead; each matrix is
// computed by the same loops, on one thread.
//
// Buffers: packedA and packedB are each thread's own (thread_local, 64-byte aligned, grown to
// the largest block seen and kept): at most MC x KC and 4 MiB of floats per thread, nothing
// proportional to the matrices.
#include <atomic>
#include <cstring>
#include <new>

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>  // baseline x86-64: no target attribute needed
#define FUSEDPO_SSE2_PACKING 1
#else
#define FUSEDPO_SSE2_PACKING 0
#endif

#include "../core/matmul.h"
#include "cpu_features.h"
#include "matmul_kernels.h"
#include "thread_pool.h"

namespace fusedpo {
namespace {

// A float buffer, 64-byte aligned, that grows on demand and is kept for the next call.
class PackBuffer {
 public:
  PackBuffer() = default;
  PackBuffer(const PackBuffer&) = delete;
  PackBuffer& operator=(const PackBuffer&) = delete;
  ~PackBuffer() { release(); }

  float* reserve(int64_t count) {
    if (count > capacity_) {
      release();
      // Aligned operator new (C++17) rather than std::aligned_alloc, which MSVC lacks.
      data_ = static_cast<float*>(::operator new(sizeof(float) * size_t(count), kAlignment));
      capacity_ = count;
    }
    return data_;
  }

 private:
  static constexpr std::align_val_t kAlignment{64};

  void release() {
    if (data_ != nullptr) ::operator delete(data_, kAlignment);
    data_ = nullptr;
    capacity_ = 0;
  }

  float* data_ = nullptr;
  int64_t capacity_ = 0;
};

thread_local PackBuffer packedABuffer;
thread_local PackBuffer packedBBuffer;

const cpu::MatmulKernel& activeKernel() {
  static const cpu::MatmulKernel kernel = [] {
    switch (cpu::activeSimdLevel()) {
#if FUSEDPO_X86_KERNELS
      case cpu::SimdLevel::Avx512: return cpu::matmulKernelAvx512();
      case cpu::SimdLevel::Avx2: return cpu::matmulKernelAvx2();
#endif
      default: break;
    }
    return cpu::matmulKernelGeneric();
  }();
  return kernel;
}

// One matrix of the batch: a [M, K] or [K, M], b [K, N] or [N, K], c [M, N].
struct MatrixProduct {
  const float* a;
  const float* b;
  float* c;
  int64_t M, N, K;
  bool transA, transB;
};

int64_t ceilDiv(int64_t value, int64_t divisor) { return (value + divisor - 1) / divisor; }

// out[q * width + r] = source[r * ld + q] for r < lines, q < count; lines .. width-1 are zeros.
// The packing of a row-major A (and of a transposed B): lines that run along K become
// interleaved columns. Four lines by four values at a time with SSE (a 4 x 4 transpose: 4
// loads and 4 stores of 4 floats instead of 16 scalar stores, which bound the scalar loop).
void packLines(const float* source, int64_t ld, int64_t lines, int64_t count, int width,
               float* out) {
  int64_t r = 0;
#if FUSEDPO_SSE2_PACKING
  for (; r + 4 <= lines; r += 4) {
    const float* s0 = source + r * ld;
    const float* s1 = s0 + ld;
    const float* s2 = s1 + ld;
    const float* s3 = s2 + ld;
    int64_t q = 0;
    for (; q + 4 <= count; q += 4) {
      __m128 x0 = _mm_loadu_ps(s0 + q), x1 = _mm_loadu_ps(s1 + q);
      __m128 x2 = _mm_loadu_ps(s2 + q), x3 = _mm_loadu_ps(s3 + q);
      _MM_TRANSPOSE4_PS(x0, x1, x2, x3);
      float* o = out + q * width + r;
      _mm_storeu_ps(o, x0);
      _mm_storeu_ps(o + width, x1);
      _mm_storeu_ps(o + 2 * width, x2);
      _mm_storeu_ps(o + 3 * width, x3);
    }
    for (; q < count; ++q) {
      float* o = out + q * width + r;
      o[0] = s0[q];
      o[1] = s1[q];
      o[2] = s2[q];
      o[3] = s3[q];
    }
  }
#endif
  for (; r < lines; ++r) {
    const float* line = source + r * ld;
    for (int64_t q = 0; q < count; ++q) out[q * width + r] = line[q];
  }
  for (; r < width; ++r) {
    for (int64_t q = 0; q < count; ++q) out[q * width + r] = 0.0f;
  }
}

// out[q * width + r] = source[q * ld + r] for r < live, q < count; live .. width-1 are zeros.
// The packing of a transposed A (and of a row-major B): contiguous runs, copied.
void packRuns(const float* source, int64_t ld, int64_t live, int64_t count, int width,
              float* out) {
  for (int64_t q = 0; q < count; ++q) {
    const float* run = source + q * ld;
    float* o = out + q * width;
    for (int64_t r = 0; r < live; ++r) o[r] = run[r];
    for (int64_t r = live; r < width; ++r) o[r] = 0.0f;
  }
}

// Rows i0 .. i0+rows-1 of op(A), columns p0 .. p0+kc-1, as ceil(rows / MR) panels [kc, MR];
// rows past the block are zeros.
void packA(const MatrixProduct& m, int MR, int64_t i0, int64_t rows, int64_t p0, int64_t kc,
           float* packed) {
  for (int64_t panel = 0; panel < rows; panel += MR) {
    const int64_t live = rows - panel < MR ? rows - panel : MR;
    const int64_t first = i0 + panel;
    float* out = packed + panel * kc;
    if (m.transA) {  // op(A)[i, p] = a[p, i]: MR contiguous values per p
      packRuns(m.a + p0 * m.M + first, m.M, live, kc, MR, out);
    } else {  // op(A)[i, p] = a[i, p]: one contiguous row per i
      packLines(m.a + first * m.K + p0, m.K, live, kc, MR, out);
    }
  }
}

// Columns j0 .. j0+cols-1 of op(B), rows p0 .. p0+kc-1, as ceil(cols / NR) panels [kc, NR];
// columns past the block are zeros.
void packB(const MatrixProduct& m, int NR, int64_t j0, int64_t cols, int64_t p0, int64_t kc,
           float* packed) {
  for (int64_t offset = 0; offset < cols; offset += NR) {
    const int64_t live = cols - offset < NR ? cols - offset : NR;
    const int64_t first = j0 + offset;
    float* out = packed + offset * kc;
    if (m.transB) {  // op(B)[p, j] = b[j, p]: one contiguous row per j
      packLines(m.b + first * m.K + p0, m.K, live, kc, NR, out);
    } else {  // op(B)[p, j] = b[p, j]: NR contiguous values per p
      packRuns(m.b + p0 * m.N + first, m.N, live, kc, NR, out);
    }
  }
}

// C[i0 .. i0+rows, j0 .. j0+cols] (+)= packedA @ packedB over kc. Edge tiles go through a
// full MR x NR tile on the stack, then the live part is written (or added) with the same one
// fp32 operation the microkernel would have done.
void macroKernel(const cpu::MatmulKernel& kernel, const MatrixProduct& m, const float* packedA,
                 const float* packedB, int64_t i0, int64_t rows, int64_t j0, int64_t cols,
                 int64_t kc, bool add) {
  const int MR = kernel.MR, NR = kernel.NR;
  alignas(64) float edge[16 * 64];  // MR x NR of the widest kernel
  for (int64_t jr = 0; jr < cols; jr += NR) {
    const int64_t liveCols = cols - jr < NR ? cols - jr : NR;
    const float* panelB = packedB + jr * kc;
    for (int64_t ir = 0; ir < rows; ir += MR) {
      const int64_t liveRows = rows - ir < MR ? rows - ir : MR;
      const float* panelA = packedA + ir * kc;
      float* c = m.c + (i0 + ir) * m.N + j0 + jr;
      if (liveRows == MR && liveCols == NR) {
        kernel.tile(kc, panelA, panelB, c, m.N, add);
        continue;
      }
      kernel.tile(kc, panelA, panelB, edge, NR, false);
      for (int64_t r = 0; r < liveRows; ++r) {
        for (int64_t j = 0; j < liveCols; ++j) {
          c[r * m.N + j] = add ? c[r * m.N + j] + edge[r * NR + j] : edge[r * NR + j];
        }
      }
    }
  }
}

// parallelFor for bodies that may throw (std::bad_alloc, from a pack buffer's first growth on
// a thread): an exception must not leave a pool worker, so each chunk catches it and the caller
// throws once every chunk is done (C is then partly written).
template <class Body>
void parallelForCatching(int64_t count, Body& body) {
  std::atomic<bool> failed{false};
  auto guarded = [&](int64_t begin, int64_t end) {
    try {
      body(begin, end);
    } catch (...) {
      failed = true;
    }
  };
  cpu::parallelFor(count, guarded);
  if (failed) throw std::bad_alloc();
}

// Columns of B packed at once: every KC block of K for NC columns, at most kPackedBFloats floats
// (4 MiB); NC shrinks as K grows.
constexpr int64_t kPackedBFloats = int64_t(1) << 20;

// One matrix product on the thread pool (inline when called from inside a pool chunk). Each
// thread takes a contiguous range of MR-row panels of C (or of NR-column panels, when C is wider
// than tall) and packs for itself all of A and B its range needs. On the 2-core development VM
// this beat packing B once, shared by both threads, by 10-25% at 2 threads on the [256, N, 1024]
// gradient shapes, despite the duplicated packing: one meeting of the threads per product
// instead of two, and no packed panels read from the other core's cache. Splitting the longer
// side of C duplicates the smaller operand (B, K x N, when M >= N). With many threads a shared
// packed B would pay off again.
void multiplyMatrix(const cpu::MatmulKernel& kernel, const MatrixProduct& m, bool accumulate) {
  const int MR = kernel.MR, NR = kernel.NR;
  const int64_t KC = kernel.KC;
  const int64_t MC = kernel.MC / MR * MR;
  const int64_t blocksK = ceilDiv(m.K, KC);
  int64_t NC = kPackedBFloats / m.K / NR * NR;
  if (NC < NR) NC = NR;
  if (NC > m.N) NC = ceilDiv(m.N, NR) * NR;

  // C[rowBegin .. rowEnd, colBegin .. colEnd] on the calling thread.
  auto multiplyBlock = [&](int64_t rowBegin, int64_t rowEnd, int64_t colBegin, int64_t colEnd) {
    float* packedA = packedABuffer.reserve(MC * KC);
    float* packedB = packedBBuffer.reserve(m.K * NC);
    for (int64_t jc = colBegin; jc < colEnd; jc += NC) {
      const int64_t cols = colEnd - jc < NC ? colEnd - jc : NC;
      const int64_t colPanels = ceilDiv(cols, NR);
      // packedB: K block pc (rows pc .. pc+kc-1 of op(B)) at packedB + pc * colPanels * NR,
      // as NR-wide panels [kc, NR].
      for (int64_t block = 0; block < blocksK; ++block) {
        const int64_t pc = block * KC, kc = m.K - pc < KC ? m.K - pc : KC;
        packB(m, NR, jc, cols, pc, kc, packedB + pc * colPanels * NR);
      }
      // MC rows at a time, every K block in order for those rows before the next MC rows
      // (their C tile stays in cache).
      for (int64_t ic = rowBegin; ic < rowEnd; ic += MC) {
        const int64_t rows = rowEnd - ic < MC ? rowEnd - ic : MC;
        for (int64_t block = 0; block < blocksK; ++block) {
          const int64_t pc = block * KC, kc = m.K - pc < KC ? m.K - pc : KC;
          packA(m, MR, ic, rows, pc, kc, packedA);
          macroKernel(kernel, m, packedA, packedB + pc * colPanels * NR, ic, rows, jc, cols, kc,
                      accumulate || block > 0);
        }
      }
    }
  };
  if (m.N > m.M) {
    auto multiplyColumns = [&](int64_t beginPanel, int64_t endPanel) {
      multiplyBlock(0, m.M, beginPanel * NR, endPanel * NR < m.N ? endPanel * NR : m.N);
    };
    parallelForCatching(ceilDiv(m.N, NR), multiplyColumns);
  } else {
    auto multiplyRows = [&](int64_t beginPanel, int64_t endPanel) {
      multiplyBlock(beginPanel * MR, endPanel * MR < m.M ? endPanel * MR : m.M, 0, m.N);
    };
    parallelForCatching(ceilDiv(m.M, MR), multiplyRows);
  }
}

void fastMatmul(const float* A, const float* B, float* C, const MatmulShape& shape,
                bool accumulate) {
  if (shape.batch <= 0 || shape.M <= 0 || shape.N <= 0) return;
  if (shape.K <= 0) {
    if (accumulate) return;
    for (int64_t b = 0; b < shape.batch; ++b) {
      std::memset(C + b * shape.strideC, 0, sizeof(float) * shape.M * shape.N);
    }
    return;
  }
  const cpu::MatmulKernel& kernel = activeKernel();
  auto product = [&](int64_t b) {
    return MatrixProduct{A + b * shape.strideA, B + b * shape.strideB, C + b * shape.strideC,
                         shape.M, shape.N, shape.K, shape.transA, shape.transB};
  };
  // Many matrices: one whole matrix per thread at a time (each product's own parallelFor then
  // runs inline). An uneven split of few matrices would leave threads idle: split each instead.
  const int64_t threads = threadCount();
  const bool splitBatch =
      threads > 1 && (shape.batch >= 4 * threads || (shape.batch >= threads && shape.batch % threads == 0));
  if (splitBatch) {
    auto multiplyMatrices = [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) multiplyMatrix(kernel, product(b), accumulate);
    };
    parallelForCatching(shape.batch, multiplyMatrices);
    return;
  }
  for (int64_t b = 0; b < shape.batch; ++b) multiplyMatrix(kernel, product(b), accumulate);
}

}  // namespace

void matmul(Impl impl, const float* A, const float* B, float* C, const MatmulShape& shape,
            bool accumulate) {
  if (impl == Impl::Reference) {
    referenceMatmul(A, B, C, shape, accumulate);
    return;
  }
  fastMatmul(A, B, C, shape, accumulate);
}

}  // namespace fusedpo
