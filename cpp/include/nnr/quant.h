// Quantization and reconstruction (ISO/IEC 15938-17, as in NNCodec).
#pragma once
#include <cstdint>

#include "nnr/tensor_coder.h"

namespace nnr {

// Step size of qp at qp_density: (2^qd + (qp & (2^qd - 1))) * 2^((qp >> qd) - qd),
// computed in double and rounded to float32 (as NNCodec's C++ does).
float step_size(int32_t qp, int32_t qp_density);
double step_size_double(int32_t qp, int32_t qp_density);

// Uniform reconstruction quantization without rate term: round half away from zero of
// float32(w * float32(1 / step)). Returns false if a level would overflow 32 bits.
bool quantize_uniform(const float* w, int32_t* k, uint64_t n, float step);

// Dependent quantization: the 8-state trellis in scan order minimising squared error
// (NNCodec's default, lambda_scale 0). Writes reconstruction multipliers k.
bool quantize_dependent(const float* w, int32_t* k, const TensorParams& shape, float step);

// Rate-distortion optimised variants: minimise (w/step - k)^2 + lambda * bits, with the bits
// estimated by the CABAC rate model of the real coder (same binarization and context
// selection; contexts adapt along each survivor path; entry-point resets are modelled).
// lambda = lambda_scale * ln(2)/6 for uniform quantization (RDOQ) and
// lambda_scale * 4 * ln(2)/6 * 0.7 for the dependent-quantization trellis (NNCodec's scaling).
// lambda_scale <= 0 gives the distortion-only quantizers above.
bool quantize_uniform_rd(const float* w, int32_t* k, const TensorParams& shape, float step, double lambda_scale);
bool quantize_dependent_rd(const float* w, int32_t* k, const TensorParams& shape, float step, double lambda_scale);

// w = float32(step) * float32(k), no fused multiply-add.
void dequantize(const int32_t* k, float* w, uint64_t n, float step);

}  // namespace nnr
