// libFuzzer target over the C++ payload decoder, nnr::decode_payload.
//
// Input layout (little endian):
//   byte 0                 number of tensors: 1 + (byte & 7)
//   16 bytes per tensor    u32 rows, u32 cols, u8 flags, u8 scan_order, u8 qp_bits,
//                          u8 cabac_unary_length_minus1, u16 codebook_size,
//                          u16 codebook_zero_offset
//                          flags: bit 0 dq, 1 has_qp, 2 profile 1, 3 parent_node_id_present,
//                                 4 legacy_v03, 5 TCA base present, 6 HDSP history present,
//                                 7 entry points follow: parallel block-row decoding
//   per tensor with flag 7 u8 count, then count x (u32 bit offset delta, u8 cabac_offset,
//                          u8 dq_state); decoded with 2 threads
//   the rest               the NDU payload (one CABAC stream)
//
// Out-of-range parameters (scan_order 5.., qp_bits 0 or > 32, zero offset outside the
// codebook) are passed on as they are: decode_payload must reject them with nnr::Error.
// Tensors of more than kMaxElements elements in total are skipped (the Python layer's
// resource limits keep such sizes away from the core). Any exception other than nnr::Error,
// any sanitizer report and a consumed byte count past the payload are findings.
// cpp/fuzz/make_seeds.py writes seeds in this layout from the conformance vectors.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "nnr/errors.h"
#include "nnr/tensor_coder.h"

namespace {

constexpr uint64_t kMaxElements = uint64_t(1) << 9;
constexpr size_t kParamBytes = 16;

uint32_t le32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }
uint16_t le16(const uint8_t* p) { return uint16_t(p[0] | p[1] << 8); }

// Deterministic pseudo-random side data (TCA parent levels, HDSP history) per tensor.
uint32_t next(uint32_t& s) {
  s = s * 1664525u + 1013904223u;
  return s >> 8;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t n = 1 + (data[0] & 7);
  size_t header = 1 + n * kParamBytes;
  if (size < header) return 0;
  std::vector<nnr::TensorParams> params(n);
  std::vector<std::vector<int32_t>> bases(n), outs(n);
  std::vector<std::vector<uint8_t>> hists(n);
  uint64_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* q = data + 1 + i * kParamBytes;
    nnr::TensorParams& p = params[i];
    p.rows = le32(q);
    p.cols = le32(q + 4);
    const uint8_t flags = q[8];
    p.dq = flags & 1;
    p.has_qp = (flags >> 1) & 1;
    p.profile = (flags >> 2) & 1;
    p.parent_node_id_present = (flags >> 3) & 1;
    p.legacy_v03 = (flags >> 4) & 1;
    p.scan_order = q[9];
    p.qp_bits = q[10];
    p.num_gtx = uint32_t(q[11]) + 1;
    p.codebook_size = le16(q + 12);
    p.codebook_zero_offset = le16(q + 14);
    const uint64_t elements = p.size();
    total += elements;
    if (total > kMaxElements) return 0;
    uint32_t seed = uint32_t(i) * 977u + p.rows;
    if (flags & 32) {
      bases[i].resize(elements);
      for (auto& v : bases[i]) v = int32_t(next(seed) % 7) - 3;
      p.tca_base = bases[i].data();
    }
    if (flags & 64) {
      hists[i].resize(elements);
      for (auto& v : hists[i]) v = uint8_t(next(seed) & 1);
      p.hdsp_hist = hists[i].data();
    }
    outs[i].resize(elements);
    if (flags & 128) {  // signalled entry points (as the NDU header carries them)
      if (size < header + 1) return 0;
      const size_t count = data[header++];
      if (size < header + 6 * count) return 0;
      for (size_t j = 0; j < count; ++j, header += 6)
        p.entry_point_deltas.push_back({le32(data + header), data[header + 4], data[header + 5]});
      p.threads = 2;
    }
  }
  // The payload in its own exactly sized heap block, so that ASan sees any read past it.
  const size_t payload_size = size - header;
  std::unique_ptr<uint8_t[]> payload(new uint8_t[payload_size ? payload_size : 1]);
  if (payload_size) std::memcpy(payload.get(), data + header, payload_size);
  std::vector<int32_t*> out_ptrs;
  for (auto& o : outs) out_ptrs.push_back(o.data());
  std::vector<nnr::TensorSide> side;
  try {
    const size_t used = nnr::decode_payload(payload.get(), payload_size, params, out_ptrs, side);
    if (used > payload_size || side.size() != n) std::abort();
  } catch (const nnr::Error&) {
  }
  return 0;
}
