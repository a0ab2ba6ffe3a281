// Coding of the tensors of one NDU payload: one CABAC stream, all tensors in order, one
// termination at the end (ISO/IEC 15938-17 as implemented by NNCodec 2.1.3 and, with
// `legacy_v03`, NNCodec 0.3.x).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "nnr/errors.h"

namespace nnr {

struct EntryPointState {
  uint64_t bit_position;  // absolute, from the payload start
  uint32_t cabac_offset;
  uint32_t dq_state;
};

struct TensorParams {
  uint32_t rows = 1;          // shape[0]
  uint32_t cols = 1;          // prod(shape[1:])
  int scan_order = 0;         // 0 raster, 1..4 blocks of 8..64 (forced to 0 for rows<2 or cols<2)
  bool dq = false;            // dependent quantization (levels are reconstruction multipliers k)
  bool has_qp = true;         // FLOAT / BLOCK payloads start each tensor with iae(qp_bits)
  int qp_bits = 8;            // 6 + qp_density
  int profile = 1;            // general_profile_idc
  bool parent_node_id_present = false;
  uint32_t num_gtx = 11;      // cabac_unary_length_minus1 + 1
  uint32_t codebook_size = 0;
  uint32_t codebook_zero_offset = 0;
  const int32_t* tca_base = nullptr;  // parent levels (temporal_context_modeling_flag = 1)
  const uint8_t* hdsp_hist = nullptr; // history mask, nullptr when the tensor has none
  bool legacy_v03 = false;
  // Encoder only: the init-set choice looks at the first this many positions (0: all, as
  // NNCodec does). Any choice is decodable; a bound keeps the estimation pass cheap.
  uint64_t init_estimate_limit = 0;
  // Encoder only: estimate on the DQ multipliers k instead of the coded levels q, as NNCodec's
  // pseudo-encoding pass does (its chosen sets, so its streams byte for byte). Off: on the bins
  // the tensor is actually coded with (fewer bins with DQ, and the estimate of the real cost).
  bool init_estimate_on_multipliers = true;
  // Decoder only: the signalled entry points (bit_position holds the coded delta: the first
  // from the tensor's level-data start, the others from the previous entry point). With
  // threads > 1 and more than one block row, block rows are decoded in parallel from them;
  // every entry point is checked against the state the previous rows end in.
  std::vector<EntryPointState> entry_point_deltas;
  int threads = 1;

  uint64_t size() const { return uint64_t(rows) * cols; }
  int effective_scan() const { return (cols <= 1 || rows <= 1) ? 0 : scan_order; }
  uint32_t block_rows() const;  // number of block rows, 0 for raster scan
};

// Per-tensor side information: decoder output, encoder input (qp, hdsp, row_skip).
struct TensorSide {
  int32_t qp = 0;
  bool hdsp = false;
  bool row_skip_enabled = false;
  std::vector<uint8_t> row_skip;        // per row when row_skip_enabled
  std::vector<uint8_t> init_sets;       // decoded / chosen init set per signalled context
  uint64_t level_start_bit = 0;         // bit position after the init signalling
  std::vector<EntryPointState> entry_points;  // at each block-row start but the first
};

// Decodes one NDU payload. `out[i]` receives params[i].size() multipliers k (C order).
// Returns the number of payload bytes consumed; throws Error on any malformed input.
size_t decode_payload(const uint8_t* data, size_t size, const std::vector<TensorParams>& params,
                      const std::vector<int32_t*>& out, std::vector<TensorSide>& side);

// Encodes the multipliers k of each tensor into one NDU payload. `side[i]` gives qp,
// hdsp and row-skip choices; init sets are chosen (param_opt) or left at 0.
std::vector<uint8_t> encode_payload(const std::vector<TensorParams>& params,
                                    const std::vector<const int32_t*>& levels,
                                    std::vector<TensorSide>& side, bool param_opt);

}  // namespace nnr
