#include "kernels/int_blocks.h"

#include <cstring>

#include "core/fp16.h"
#include "kernels/iq_grids.h"
#include "kernels/lmp2.h"
#include "kernels/qdot.h"

namespace lmpress {

const int8_t kFp4Values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

float e8m0_to_f32_half(uint8_t e) {
  const uint32_t bits = e < 2 ? 0x00200000u << e : uint32_t(e - 1) << 23;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

namespace {

template <typename B>
const B& as(const uint8_t* p) {
  return *reinterpret_cast<const B*>(p);
}

// 8 grid magnitudes with the signs of `signs` (bit j: value j negative).
inline void signed8(uint64_t entry, uint8_t signs, int8_t* q) {
  for (int j = 0; j < 8; j++) q[j] = int8_t((signs >> j & 1) ? -grid_byte(entry, j) : grid_byte(entry, j));
}
// 4 + 4 magnitudes of two 4-wide IQ3 entries, signs bits 0..7.
inline void signed4x2(uint32_t e1, uint32_t e2, uint8_t signs, int8_t* q) {
  signed8(uint64_t(e1) | uint64_t(e2) << 32, signs, q);
}

// IQ2_XXS: per 32 values two uint32: four 8-value grid indices, then four
// 7-bit sign groups and a 4-bit scale. Value = d · (0.5 + s) / 4 · grid.
void unpack_iq2_xxs(const uint8_t* p, UnpackedBlock& o) {
  const auto& b = as<BlockIQ2_XXS>(p);
  o.d = f16_to_f32(b.d) * 0.125f;
  for (int ib = 0; ib < QK_K / 32; ib++) {
    uint32_t aux[2];
    std::memcpy(aux, b.qs + 4 * ib, sizeof aux);
    o.ls[ib] = int16_t(2 * (aux[1] >> 28) + 1);
    for (int l = 0; l < 4; l++)
      signed8(kIq2xxsGrid[(aux[0] >> 8 * l) & 0xff], kIqSigns[(aux[1] >> 7 * l) & 127], o.q + 32 * ib + 8 * l);
  }
}

// IQ2_XS: 16-bit entries of a 9-bit grid index and 7 sign bits; a 4-bit scale per 16 values.
void unpack_iq2_xs(const uint8_t* p, UnpackedBlock& o) {
  const auto& b = as<BlockIQ2_XS>(p);
  o.d = f16_to_f32(b.d) * 0.125f;
  for (int ib = 0; ib < QK_K / 32; ib++) {
    o.ls[2 * ib] = int16_t(2 * (b.scales[ib] & 0xf) + 1);
    o.ls[2 * ib + 1] = int16_t(2 * (b.scales[ib] >> 4) + 1);
    for (int l = 0; l < 4; l++) {
      const uint16_t e = b.qs[4 * ib + l];
      signed8(kIq2xsGrid[e & 511], kIqSigns[e >> 9], o.q + 32 * ib + 8 * l);
    }
  }
}

// IQ2_S: 10-bit grid indices (low bytes in qs, high 2 bits in qh), 8 explicit sign bits per 8 values.
void unpack_iq2_s(const uint8_t* p, UnpackedBlock& o) {
  const auto& b = as<BlockIQ2_S>(p);
  o.d = f16_to_f32(b.d) * 0.125f;
  const uint8_t* signs = b.qs + QK_K / 8;
  for (int ib = 0; ib < QK_K / 32; ib++) {
    o.ls[2 * ib] = int16_t(2 * (b.scales[ib] & 0xf) + 1);
    o.ls[2 * ib + 1] = int16_t(2 * (b.scales[ib] >> 4) + 1);
    for (int l = 0; l < 4; l++) {
      const int idx = b.qs[4 * ib + l] | ((b.qh[ib] << (8 - 2 * l)) & 0x300);
      signed8(kIq2sGrid[idx], signs[4 * ib + l], o.q + 32 * ib + 8 * l);
    }
  }
}

// IQ3_XXS: 8-bit indices of 4-value entries, then per 32 values a uint32 of
// four 7-bit sign groups and a 4-bit scale. Value = d · (0.5 + s) / 2 · grid.
void unpack_iq3_xxs(const uint8_t* p, UnpackedBlock& o) {
  const auto& b = as<BlockIQ3_XXS>(p);
  o.d = f16_to_f32(b.d) * 0.25f;
  const uint8_t* gas = b.qs + QK_K / 4;
  for (int ib = 0; ib < QK_K / 32; ib++) {
    uint32_t aux;
    std::memcpy(&aux, gas + 4 * ib, sizeof aux);
    o.ls[ib] = int16_t(2 * (aux >> 28) + 1);
    const uint8_t* qs = b.qs + 8 * ib;
    for (int l = 0; l < 4; l++)
      signed4x2(kIq3xxsGrid[qs[2 * l]], kIq3xxsGrid[qs[2 * l + 1]], kIqSigns[(aux >> 7 * l) & 127],
                o.q + 32 * ib + 8 * l);
  }
}

// IQ3_S: 9-bit indices of 4-value entries (ninth bit in qh), explicit signs,
// a 4-bit scale per 32 values: value = d · (1 + 2s) · grid.
void unpack_iq3_s(const uint8_t* p, UnpackedBlock& o) {
  const auto& b = as<BlockIQ3_S>(p);
  o.d = f16_to_f32(b.d);
  for (int ib = 0; ib < QK_K / 32; ib++) {
    o.ls[ib] = int16_t(2 * ((b.scales[ib / 2] >> 4 * (ib % 2)) & 0xf) + 1);
    const uint8_t* qs = b.qs + 8 * ib;
    const int qh = b.qh[ib];
    for (int l = 0; l < 4; l++)
      signed4x2(kIq3sGrid[qs[2 * l] | ((qh << (8 - 2 * l)) & 256)], kIq3sGrid[qs[2 * l + 1] | ((qh << (7 - 2 * l)) & 256)],
                b.signs[4 * ib + l], o.q + 32 * ib + 8 * l);
  }
}

// IQ1_S: 11-bit indices of 8 values in {-1, 0, 1}, shifted by ±1/8 per 32
// values; a 3-bit scale per 32. Stored as 8 · grid ± 1 with unit 1/8.
void unpack_iq1_s(const uint8_t* p, UnpackedBlock& o) {
  const auto& b = as<BlockIQ1_S>(p);
  o.d = f16_to_f32(b.d) * 0.125f;
  for (int ib = 0; ib < QK_K / 32; ib++) {
    const int qh = b.qh[ib];
    o.ls[ib] = int16_t(2 * ((qh >> 12) & 7) + 1);
    const int delta = qh & 0x8000 ? -1 : 1;
    for (int l = 0; l < 4; l++) {
      const uint64_t e = kIq1sGrid[b.qs[4 * ib + l] | (((qh >> 3 * l) & 7) << 8)];
      for (int j = 0; j < 8; j++) o.q[32 * ib + 8 * l + j] = int8_t(8 * int8_t(grid_byte(e, j)) + delta);
    }
  }
}

// IQ1_M: IQ1_S's grid with a shift sign per 8 values and a 3-bit scale per
// 16; the f16 block scale is spread over the top nibbles of the scales.
void unpack_iq1_m(const uint8_t* p, UnpackedBlock& o) {
  const auto& b = as<BlockIQ1_M>(p);
  uint16_t sc[4];
  std::memcpy(sc, b.scales, sizeof sc);
  const uint16_t d16 = uint16_t((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
  o.d = f16_to_f32(d16) * 0.125f;
  for (int ib = 0; ib < QK_K / 32; ib++) {
    o.ls[2 * ib] = int16_t(2 * ((sc[ib / 2] >> (6 * (ib % 2))) & 7) + 1);
    o.ls[2 * ib + 1] = int16_t(2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 7) + 1);
    const uint8_t* qh = b.qh + 2 * ib;
    for (int l = 0; l < 4; l++) {
      const int h = qh[l / 2] >> 4 * (l % 2);  // 3 index bits, then the shift sign
      const uint64_t e = kIq1sGrid[b.qs[4 * ib + l] | ((h & 7) << 8)];
      const int delta = h & 8 ? -1 : 1;
      for (int j = 0; j < 8; j++) o.q[32 * ib + 8 * l + j] = int8_t(8 * int8_t(grid_byte(e, j)) + delta);
    }
  }
}

// IQ4_XS: IQ4_NL's levels under a 6-bit signed scale per 32 values.
void unpack_iq4_xs(const uint8_t* p, UnpackedBlock& o) {
  const auto& b = as<BlockIQ4_XS>(p);
  o.d = f16_to_f32(b.d);
  for (int ib = 0; ib < QK_K / 32; ib++) {
    const int ls = ((b.scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((b.scales_h >> 2 * ib) & 3) << 4);
    o.ls[ib] = int16_t(ls - 32);
    for (int j = 0; j < 16; j++) {
      o.q[32 * ib + j] = kIQ4NLValues[b.qs[16 * ib + j] & 0xf];
      o.q[32 * ib + j + 16] = kIQ4NLValues[b.qs[16 * ib + j] >> 4];
    }
  }
}

// A base-3 digit: ggml stores 5 trits per byte as ceil(v · 256 / 243), the
// digit n read back by multiplying by 3^n (mod 256) and taking the top of ·3.
inline int8_t trit(uint8_t byte, int n) {
  static constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};
  const uint8_t q = uint8_t(byte * kPow3[n]);
  return int8_t(((uint16_t(q) * 3) >> 8) - 1);
}

// TQ1_0: 240 values 5 per byte in 32-byte then 16-byte runs, the last 16 four per byte.
void unpack_tq1_0(const uint8_t* p, UnpackedBlock& o) {
  const auto& b = as<BlockTQ1_0>(p);
  o.d = f16_to_f32(b.d);
  o.ls[0] = 1;
  int8_t* q = o.q;
  for (int n = 0; n < 5; n++)
    for (int m = 0; m < 32; m++) *q++ = trit(b.qs[m], n);
  for (int n = 0; n < 5; n++)
    for (int m = 0; m < 16; m++) *q++ = trit(b.qs[32 + m], n);
  for (int n = 0; n < 4; n++)
    for (int j = 0; j < 4; j++) *q++ = trit(b.qh[j], n);
}

// TQ2_0: 2 bits per value (0, 1, 2 for -1, 0, 1), four planes of 32 per 32 bytes.
void unpack_tq2_0(const uint8_t* p, UnpackedBlock& o) {
  const auto& b = as<BlockTQ2_0>(p);
  o.d = f16_to_f32(b.d);
  o.ls[0] = 1;
  for (int j = 0; j < QK_K / 4; j += 32)
    for (int l = 0; l < 4; l++)
      for (int m = 0; m < 32; m++) o.q[4 * j + 32 * l + m] = int8_t(((b.qs[j + m] >> 2 * l) & 3) - 1);
}

// Q6_K: 16 groups of 16 under int8 scales, values −32..31 (blocks.h). d ·
// scale · value has at most 11 + 7 + 5 significant bits: exact in float, as
// the file's dequantization.
void unpack_q6_k(const uint8_t* p, UnpackedBlock& o) {
  const auto& b = as<BlockQ6_K>(p);
  o.d = f16_to_f32(b.d);
  for (int j = 0; j < 16; j++) o.ls[j] = b.scales[j];
  q6_k_values(b, o.q);
}

// Q3_K: 16 groups of 16 under 6-bit signed scales, values −4..3 (blocks.h). At
// most 11 + 5 + 2 significant bits: exact in float.
void unpack_q3_k(const uint8_t* p, UnpackedBlock& o) {
  const auto& b = as<BlockQ3_K>(p);
  o.d = f16_to_f32(b.d);
  for (int j = 0; j < 16; j++) o.ls[j] = int16_t(q3_k_scale(j, b.scales));
  q3_k_values(b, o.q);
}

// 32 values from 16 bytes of nibbles (low ones first) indexing `levels`, under one scale.
void unpack_nibble_levels(const uint8_t* qs, const int8_t* levels, float d, UnpackedBlock& o) {
  o.d = d;
  o.ls[0] = 1;
  for (int j = 0; j < 16; j++) {
    o.q[j] = levels[qs[j] & 0xf];
    o.q[j + 16] = levels[qs[j] >> 4];
  }
}

// MXFP4: 32 E2M1 values (doubled to integers) under a shared power of two.
void unpack_mxfp4(const uint8_t* p, UnpackedBlock& o) {
  const auto& b = as<BlockMXFP4>(p);
  unpack_nibble_levels(b.qs, kFp4Values, e8m0_to_f32_half(b.e), o);
}

// IQ4_NL: 32 indices into the 16 non-linear levels under one f16 scale (its
// prompt batches take the int8 panels; decoding has its own Q8_0 dot).
void unpack_iq4_nl(const uint8_t* p, UnpackedBlock& o) {
  const auto& b = as<BlockIQ4_NL>(p);
  unpack_nibble_levels(b.qs, kIQ4NLValues, f16_to_f32(b.d), o);
}

// LMP2: 32 16-bit codes of 8 values each (kernels/lmp2.h), value = d / 4 · q.
void unpack_lmp2(const uint8_t* p, UnpackedBlock& o) {
  const auto& b = as<BlockLMP2>(p);
  o.d = f16_to_f32(b.d) * 0.25f;
  o.ls[0] = 1;
  for (int g = 0; g < QK_K / 8; g++) lmp2_decode(lmp2_code(b, g), o.q + 8 * g);
}

const IntBlockFormat kFormats[] = {
    {DType::IQ2_XXS, QK_K, 32, unpack_iq2_xxs, 43}, {DType::IQ2_XS, QK_K, 16, unpack_iq2_xs, 43},
    {DType::IQ2_S, QK_K, 16, unpack_iq2_s, 43},     {DType::IQ3_XXS, QK_K, 32, unpack_iq3_xxs, 62},
    {DType::IQ3_S, QK_K, 32, unpack_iq3_s, 15},     {DType::IQ1_S, QK_K, 32, unpack_iq1_s, 9},
    {DType::IQ1_M, QK_K, 16, unpack_iq1_m, 9},      {DType::IQ4_XS, QK_K, 32, unpack_iq4_xs, 127},
    {DType::TQ1_0, QK_K, QK_K, unpack_tq1_0, 1},    {DType::TQ2_0, QK_K, QK_K, unpack_tq2_0, 2},
    {DType::MXFP4, 32, 32, unpack_mxfp4, 12},       {DType::Q6_K, QK_K, 16, unpack_q6_k, 32, true},
    {DType::Q3_K, QK_K, 16, unpack_q3_k, 4, true},  {DType::IQ4_NL, 32, 32, unpack_iq4_nl, 127},
    {DType::LMP2, QK_K, QK_K, unpack_lmp2, 11, false, true},
};

}  // namespace

const IntBlockFormat* int_block_format(DType t) {
  for (const auto& f : kFormats)
    if (f.type == t) return &f;
  return nullptr;
}

void dequantize_int_blocks(const IntBlockFormat& f, const uint8_t* p, int64_t n, float* y) {
  const uint32_t bytes = dtype_info(f.type).block_bytes;
  UnpackedBlock u;
  for (int64_t b = 0; b < n / f.elems; b++, p += bytes, y += f.elems) {
    f.unpack(p, u);
    for (int i = 0; i < f.elems; i++) y[i] = u.d * float(u.ls[i / f.group]) * float(u.q[i]);
    if (f.rotated) lmp2_unrotate(y, f.elems);
  }
}

float dot_int_blocks_ref(const IntBlockFormat& f, int64_t n, const void* w, const void* act) {
  const uint32_t bytes = dtype_info(f.type).block_bytes;
  const auto* p = static_cast<const uint8_t*>(w);
  UnpackedBlock u;
  float sum = 0;
  for (int64_t b = 0; b < n / f.elems; b++, p += bytes) {
    f.unpack(p, u);
    int32_t total = 0;
    for (int g = 0; g < f.elems / f.group; g++) {
      int32_t s = 0;
      for (int i = g * f.group; i < (g + 1) * f.group; i++) {
        const int8_t a = f.elems == QK_K ? static_cast<const BlockQ8_K*>(act)[b].qs[i]
                                         : static_cast<const BlockQ8_0*>(act)[b].qs[i];
        s += int32_t(u.q[i]) * a;
      }
      total += u.ls[g] * s;
    }
    const float da = f.elems == QK_K ? static_cast<const BlockQ8_K*>(act)[b].d
                                     : f16_to_f32(static_cast<const BlockQ8_0*>(act)[b].d);
    sum += u.d * da * float(total);
  }
  return sum;
}

}  // namespace lmpress
