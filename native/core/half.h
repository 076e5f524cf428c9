// bf16 and f16 <-> fp32, bit-exact and shared by every path (reference, SIMD, CUDA).
//
// Decoding is exact. Encoding rounds to nearest, ties to even, for every input: normal numbers,
// results that become f16 subnormals (f16's exponent range is narrower than fp32's), overflow to
// infinity, and NaN (kept a quiet NaN with its sign). The SIMD paths must produce the same bits:
// bf16 with the same integer rounding, f16 with vcvtps2ph and round-to-nearest-even.
#pragma once

#include <cstdint>
#include <cstring>

#include "host_device.h"
#include "preference_loss.h"

namespace fusedpo {

FUSEDPO_HD inline float floatFromBits(uint32_t bits) {
  float value;
  memcpy(&value, &bits, sizeof value);
  return value;
}

FUSEDPO_HD inline uint32_t bitsOfFloat(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof bits);
  return bits;
}

// bf16 is the top half of an fp32.
FUSEDPO_HD inline float bf16ToFloat(uint16_t h) { return floatFromBits(uint32_t(h) << 16); }

// Adding 0x7fff plus the lowest kept bit rounds the dropped 16 bits to nearest, ties to even; a
// carry into the exponent is the right answer (it overflows to infinity past the largest bf16).
FUSEDPO_HD inline uint16_t floatToBf16(float value) {
  uint32_t bits = bitsOfFloat(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x0040u);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

// IEEE half: 1 sign, 5 exponent (bias 15), 10 mantissa bits. After F. Giesen's half_to_float:
// move the bits into place and rebias; subnormals are renormalized by one exact fp32 subtraction.
FUSEDPO_HD inline float f16ToFloat(uint16_t h) {
  const uint32_t shiftedExponent = 0x7c00u << 13;
  uint32_t bits = uint32_t(h & 0x7fffu) << 13;
  const uint32_t exponent = bits & shiftedExponent;
  bits += uint32_t(127 - 15) << 23;
  if (exponent == shiftedExponent) {
    bits += uint32_t(128 - 16) << 23;  // infinity or NaN
  } else if (exponent == 0) {
    bits += 1u << 23;  // zero or subnormal
    bits = bitsOfFloat(floatFromBits(bits) - floatFromBits(113u << 23));
  }
  return floatFromBits(bits | (uint32_t(h & 0x8000u) << 16));
}

// After F. Giesen's float_to_half_fast3_rtne. Results below f16's smallest normal are rounded by
// an fp32 addition of a magic number that puts the 10 kept mantissa bits at the bottom (round to
// nearest even, as fp32 addition is); normal results round with the add-0xfff-plus-odd-bit trick.
FUSEDPO_HD inline uint16_t floatToF16(float value) {
  uint32_t bits = bitsOfFloat(value);
  const uint32_t sign = bits & 0x80000000u;
  bits ^= sign;
  uint32_t h;
  if (bits >= (uint32_t(127 + 16) << 23)) {  // at or past 65536: infinity, or NaN
    h = bits > 0x7f800000u ? 0x7e00u : 0x7c00u;
  } else if (bits < (uint32_t(113) << 23)) {  // below 2^-14: subnormal or zero
    const uint32_t denormMagic = uint32_t((127 - 15) + (23 - 10) + 1) << 23;
    h = bitsOfFloat(floatFromBits(bits) + floatFromBits(denormMagic)) - denormMagic;
  } else {
    const uint32_t mantissaOdd = (bits >> 13) & 1u;
    bits += (uint32_t(15 - 127) << 23) + 0xfffu + mantissaOdd;
    h = bits >> 13;
  }
  return uint16_t(h | (sign >> 16));
}

// One stored logit as fp32, whatever the storage dtype (host code: the scalar paths).
inline float loadLogit(const void* logits, DType dtype, int64_t index) {
  switch (dtype) {
    case DType::BF16: return bf16ToFloat(static_cast<const uint16_t*>(logits)[index]);
    case DType::F16: return f16ToFloat(static_cast<const uint16_t*>(logits)[index]);
    case DType::F32: break;
  }
  return static_cast<const float*>(logits)[index];
}

}  // namespace fusedpo
