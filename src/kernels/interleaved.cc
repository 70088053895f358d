#include "kernels/interleaved.h"

#include "kernels/i8x8.h"
#include "kernels/iq4_nlx8.h"
#include "kernels/q4_0x8.h"
#include "kernels/q4_kx8.h"
#include "kernels/q5_0x8.h"
#include "kernels/q8_0x8.h"
#include "kernels/q8_0_2of4x8.h"

namespace lmpress {

namespace {

// One row per layout. Q8_0_2OF4_X8 is repacked only when the matrix is 2:4
// sparse (sparse/repack.cc decides), I8_X8 only when an F32 matrix of a W8A8
// model holds int8 rows (model/repack.cc), so no file type maps to them here.
const InterleavedFormat kFormats[] = {
    {DType::Q4_0_X8, 32, sizeof(BlockQ4_0x8), ActFormat::Q8_0, true, q4_0x8_kernels, repack_q4_0x8, unpack_q4_0x8,
     x8_dequantize_row<BlockQ4_0x8, dequantize_q4_0x8_row>},
    {DType::Q5_0_X8, 32, sizeof(BlockQ5_0x8), ActFormat::Q8_0, true, q5_0x8_kernels, repack_q5_0x8, unpack_q5_0x8,
     x8_dequantize_row<BlockQ5_0x8, dequantize_q5_0x8_row>},
    {DType::Q4_1_X8, 32, sizeof(BlockQ4_1x8), ActFormat::Q8_0, true, q4_1x8_kernels, repack_q4_1x8, unpack_q4_1x8,
     x8_dequantize_row<BlockQ4_1x8, dequantize_q4_1x8_row>},
    {DType::Q5_1_X8, 32, sizeof(BlockQ5_1x8), ActFormat::Q8_0, true, q5_1x8_kernels, repack_q5_1x8, unpack_q5_1x8,
     x8_dequantize_row<BlockQ5_1x8, dequantize_q5_1x8_row>},
    {DType::IQ4_NL_X8, 32, sizeof(BlockQ4_0x8), ActFormat::Q8_0, false, iq4_nlx8_kernels, repack_iq4_nlx8,
     unpack_iq4_nlx8, x8_dequantize_row<BlockQ4_0x8, dequantize_iq4_nlx8_row>,
     x8_panel_chunks<BlockQ4_0x8, decode_iq4_nlx8_chunks>},
    {DType::MXFP4_X8, 32, sizeof(BlockQ4_0x8), ActFormat::Q8_0, false, mxfp4x8_kernels, repack_mxfp4x8,
     unpack_mxfp4x8, x8_dequantize_row<BlockQ4_0x8, dequantize_mxfp4x8_row>},
    {DType::Q8_0_X8, 32, sizeof(BlockQ8_0x8), ActFormat::Q8_0, false, q8_0x8_kernels, repack_q8_0x8, unpack_q8_0x8,
     x8_dequantize_row<BlockQ8_0x8, dequantize_q8_0x8_row>},
    {DType::Q4_K_X8, QK_K, sizeof(BlockQ4_Kx8), ActFormat::Q8_K, false, q4_kx8_kernels, repack_q4_kx8, unpack_q4_kx8,
     x8_dequantize_row<BlockQ4_Kx8, dequantize_q4_kx8_row>},
    {DType::Q8_0_2OF4_X8, 32, sizeof(BlockQ8_0_2of4x8), ActFormat::Q8_0, false, q8_0_2of4x8_kernels,
     repack_q8_0_2of4x8, unpack_q8_0_2of4x8, x8_dequantize_row<BlockQ8_0_2of4x8, dequantize_q8_0_2of4x8_row>},
    {DType::I8_X8, 32, 8 * 32, ActFormat::I8_TOKEN, false, i8x8_kernels, repack_i8x8, unpack_i8x8,
     x8_dequantize_row<uint8_t, dequantize_i8x8_row>, nullptr, sizeof(I8x8Header)},
};

}  // namespace

const InterleavedFormat* interleaved_format(DType t) {
  for (const auto& f : kFormats)
    if (f.type == t) return &f;
  return nullptr;
}

const InterleavedFormat* interleaved_repack_for(DType from) {
#if !defined(__x86_64__)
  // The layouts' kernels are SIMD on x86-64 only. Elsewhere their scalar
  // references would replace what the file types get there (SIMD row dots for
  // decoding, the packed GEMM for prompts), so matrices keep their file layout.
  return nullptr;
#endif
  for (const auto& f : kFormats)
    if (f.type != DType::Q8_0_2OF4_X8 && f.type != DType::I8_X8 && file_type(f.type) == from) return &f;
  return nullptr;
}

}  // namespace lmpress
