// The 8-row interleaved weight layouts (Q4_0_X8, Q4_1_X8, Q5_0_X8, Q5_1_X8, Q8_0_X8, Q4_K_X8,
// IQ4_NL_X8, MXFP4_X8, Q8_0_2OF4_X8, I8_X8) as one table: a row per layout with what matmul, the
// load-time repack and the exporter need, and one kernel signature for all
// (as ggml-cpu/repack.h). A new layout is its own file (block struct, pack,
// kernels, a *_kernels() chooser) plus one row in interleaved.cc and one in
// core/dtype.cc's type table.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "kernels/qdot.h"

namespace lmpress {

// 8 outputs of one row group for one token: activations `act` (the format's
// ActFormat blocks, or I8_TOKEN bytes), `sums` the Σ of each Q8_0 activation block's int8 values
// (read only by the formats that store offset values, Q4_0 and Q5_0, or minimums, Q4_1 and Q5_1).
using X8Gemv = void (*)(int64_t cols, const void* group, const void* act, const int32_t* sums, float* out);
// The same for 4 tokens: activations and sums `stride` blocks apart, outputs `out_stride` floats apart.
using X8Gemm4 = void (*)(int64_t cols, const void* group, const void* act, const int32_t* sums, int64_t stride,
                         float* out, int64_t out_stride);

// n = 1..3 tokens in one pass over the group, each row as gemv gives it.
using X8GemmN = void (*)(int64_t n, int64_t cols, const void* group, const void* act, const int32_t* sums,
                         int64_t stride, float* out, int64_t out_stride);

struct X8Kernels {
  X8Gemv gemv = nullptr;
  X8Gemm4 gemm4 = nullptr;  // null: no 4-token kernel (prompts take the f32 tiles)
  X8GemmN gemmn = nullptr;  // null: n tokens take n gemv calls
  // gemm4 on two consecutive groups (16 rows, the second group right after the
  // first in memory, outputs 16 floats per token), each row as gemm4 gives it.
  // null: gemm4 per group.
  X8Gemm4 gemm4x2 = nullptr;
};

struct InterleavedFormat {
  DType type;                // the in-memory layout
  int64_t block_cols;        // weight columns per block (32, or 256 for the k-quants)
  size_t group_block_bytes;  // bytes of one block of 8 rows
  ActFormat act;             // activation blocks the kernels take
  bool act_sums;             // the kernels read `sums`
  X8Kernels (*kernels)();    // the best kernels cpu_isa() allows: asked once per matmul
  Tensor (*repack)(const Tensor&);                 // from the file type (dtype_info(type).file_type)
  std::vector<uint8_t> (*unpack)(const Tensor&);  // back to the file type's bytes, bit for bit
  void (*dequantize_row)(const void* group, int64_t cols, int r, float* out);  // row r (0..7) of a group
  // Non-null: prompt batches take the int8 panels (kernels/int_panels.h) of
  // the file type where those apply, the layout's own kernels then serving
  // decoding only; this decodes one group's 8 rows into chunks (row r's
  // cols / 32 chunks from out + r · cols / 32).
  void (*panel_chunks)(const void* group, int64_t cols, ChunkQ8* out) = nullptr;
  size_t group_header_bytes = 0;  // bytes before a group's blocks (I8_X8's row scales)

  // Bytes of one group of 8 rows of `cols` columns.
  uint64_t group_bytes(int64_t cols) const {
    return group_header_bytes + uint64_t(cols / block_cols) * group_block_bytes;
  }
};

// The row of an interleaved layout, or null for any other type.
const InterleavedFormat* interleaved_format(DType t);
// The layout a matrix of file type `from` is repacked into at load, or null
// (always null off x86-64, where the layouts have no SIMD kernels).
const InterleavedFormat* interleaved_repack_for(DType from);

// A group type with minimums (Q4_1_X8, Q5_1_X8: w = d·q + m) rather than an offset on its stored values.
template <class G>
constexpr bool kHasMinimums = requires(const G& g) { g.m; };

// Adapters from a layout's typed kernels to the table's signatures.
template <class Group, class Act, void (*F)(int64_t, const Group*, const Act*, const int32_t*, float*)>
void x8_gemv(int64_t cols, const void* g, const void* a, const int32_t* sums, float* out) {
  F(cols, static_cast<const Group*>(g), static_cast<const Act*>(a), sums, out);
}
template <class Group, class Act, void (*F)(int64_t, const Group*, const Act*, float*)>
void x8_gemv(int64_t cols, const void* g, const void* a, const int32_t*, float* out) {
  F(cols, static_cast<const Group*>(g), static_cast<const Act*>(a), out);
}
template <class Group, class Act,
          void (*F)(int64_t, const Group*, const Act*, const int32_t*, int64_t, float*, int64_t)>
void x8_gemm4(int64_t cols, const void* g, const void* a, const int32_t* sums, int64_t stride, float* out,
              int64_t out_stride) {
  F(cols, static_cast<const Group*>(g), static_cast<const Act*>(a), sums, stride, out, out_stride);
}
template <class Group, class Act, void (*F)(int64_t, const Group*, const Act*, int64_t, float*, int64_t)>
void x8_gemm4(int64_t cols, const void* g, const void* a, const int32_t*, int64_t stride, float* out,
              int64_t out_stride) {
  F(cols, static_cast<const Group*>(g), static_cast<const Act*>(a), stride, out, out_stride);
}
template <class Group, class Act,
          void (*F)(int64_t, int64_t, const Group*, const Act*, const int32_t*, int64_t, float*, int64_t)>
void x8_gemmn(int64_t n, int64_t cols, const void* g, const void* a, const int32_t* sums, int64_t stride, float* out,
              int64_t out_stride) {
  F(n, cols, static_cast<const Group*>(g), static_cast<const Act*>(a), sums, stride, out, out_stride);
}
template <class Group, class Act, void (*F)(int64_t, int64_t, const Group*, const Act*, int64_t, float*, int64_t)>
void x8_gemmn(int64_t n, int64_t cols, const void* g, const void* a, const int32_t*, int64_t stride, float* out,
              int64_t out_stride) {
  F(n, cols, static_cast<const Group*>(g), static_cast<const Act*>(a), stride, out, out_stride);
}
template <class Group, void (*F)(const Group*, int64_t, int, float*)>
void x8_dequantize_row(const void* g, int64_t cols, int r, float* out) {
  F(static_cast<const Group*>(g), cols, r, out);
}
template <class Group, void (*F)(const Group*, int64_t, ChunkQ8*)>
void x8_panel_chunks(const void* g, int64_t cols, ChunkQ8* out) {
  F(static_cast<const Group*>(g), cols, out);
}
// Four one-token calls: the scalar path's 4-token kernel.
template <class Act, X8Gemv Gemv>
void x8_gemm4_by_gemv(int64_t cols, const void* g, const void* a, const int32_t* sums, int64_t stride, float* out,
                      int64_t out_stride) {
  for (int64_t t = 0; t < 4; t++)
    Gemv(cols, g, static_cast<const Act*>(a) + t * stride, sums ? sums + t * stride : nullptr, out + t * out_stride);
}

// The scalar kernels of a layout: the reference gemv, 4 of them for 4 tokens.
template <class Group, class Act, auto Ref>
X8Kernels x8_reference_kernels() {
  constexpr X8Gemv ref = x8_gemv<Group, Act, Ref>;
  return {ref, x8_gemm4_by_gemv<Act, ref>};
}

// The chooser of a layout with scalar, AVX2 and VNNI kernels: the reference
// gemv (4 of them for 4 tokens) without SIMD, else the AVX2 gemv with the
// 4-token and 1..3-token kernels of the vpdpbusd encoding qdot_vnni() picks,
// or AVX2's 4-token kernel (and gemv per token for fewer).
template <class Group, class Act, auto Ref, auto Gemv, auto Gemm4, auto GemmAvxVnni, auto GemmAvx512Vnni,
          auto GemmEmulated, auto GemmNAvxVnni, auto GemmNAvx512Vnni, auto GemmNEmulated>
X8Kernels x8_kernels_with_vnni() {
  if (!qdot_simd_active()) return x8_reference_kernels<Group, Act, Ref>();
  constexpr X8Gemv gemv = x8_gemv<Group, Act, Gemv>;
  switch (qdot_vnni()) {
    case Vnni::avx: return {gemv, x8_gemm4<Group, Act, GemmAvxVnni>, x8_gemmn<Group, Act, GemmNAvxVnni>};
    case Vnni::avx512: return {gemv, x8_gemm4<Group, Act, GemmAvx512Vnni>, x8_gemmn<Group, Act, GemmNAvx512Vnni>};
    case Vnni::emulated: return {gemv, x8_gemm4<Group, Act, GemmEmulated>, x8_gemmn<Group, Act, GemmNEmulated>};
    case Vnni::none: break;
  }
  return {gemv, x8_gemm4<Group, Act, Gemm4>};
}

// Whether the 512-bit two-group kernels run: the CPU has AVX512-VNNI (also
// beside AVX-VNNI, which the 8-row kernels prefer) and a real VNNI encoding is
// chosen (not none, not the tests' emulated one).
inline bool gemm4x2_allowed() {
  const Vnni v = qdot_vnni();
  return (v == Vnni::avx512 || v == Vnni::avx) && qdot_vnni_available(Vnni::avx512);
}

// k with `pair` as its two-group kernel where gemm4x2_allowed().
inline X8Kernels with_gemm4x2(X8Kernels k, X8Gemm4 pair) {
  if (gemm4x2_allowed()) k.gemm4x2 = pair;
  return k;
}

}  // namespace lmpress
