// Pinned NDU payloads of conformance vectors (written by NNCodec): each decodes to the pinned
// qp and levels (FNV-1a hash), consumes the whole payload, and the levels encode back to the
// very same bytes. Regenerate pinned_payloads.inc with cpp/tests/make_pinned.py.
#include <string>
#include <vector>

#include "check.h"
#include "nnr/tensor_coder.h"

namespace {

struct PinnedTensor {
  uint32_t rows, cols;
  int scan_order;
  bool dq, has_qp;
  int qp_bits, profile;
  bool parent_node_id_present;
  uint32_t num_gtx, codebook_size, codebook_zero_offset;
  bool legacy_v03;
  int32_t qp;
  uint64_t fnv;
};

struct PinnedPayload {
  const char* name;
  std::vector<PinnedTensor> tensors;
  std::vector<uint8_t> payload;
};

#include "pinned_payloads.inc"

uint64_t fnv1a64(const std::vector<int32_t>& v) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (int32_t x : v) {
    const uint32_t u = static_cast<uint32_t>(x);
    for (int i = 0; i < 4; ++i) {
      h ^= (u >> (8 * i)) & 0xFF;
      h *= 0x100000001B3ull;
    }
  }
  return h;
}

nnr::TensorParams params_of(const PinnedTensor& t) {
  nnr::TensorParams p;
  p.rows = t.rows;
  p.cols = t.cols;
  p.scan_order = t.scan_order;
  p.dq = t.dq;
  p.has_qp = t.has_qp;
  p.qp_bits = t.qp_bits;
  p.profile = t.profile;
  p.parent_node_id_present = t.parent_node_id_present;
  p.num_gtx = t.num_gtx;
  p.codebook_size = t.codebook_size;
  p.codebook_zero_offset = t.codebook_zero_offset;
  p.legacy_v03 = t.legacy_v03;
  return p;
}

void pinned(const PinnedPayload& pp) {
  std::vector<nnr::TensorParams> params;
  for (const auto& t : pp.tensors) params.push_back(params_of(t));
  std::vector<std::vector<int32_t>> levels;
  std::vector<int32_t*> outs;
  for (const auto& p : params) levels.emplace_back(p.size());
  for (auto& l : levels) outs.push_back(l.data());
  std::vector<nnr::TensorSide> side;
  check::GuardedBuffer buf(pp.payload);
  size_t used = 0;
  try {
    used = nnr::decode_payload(buf.data(), buf.size(), params, outs, side);
  } catch (const nnr::Error& e) {
    std::fprintf(stderr, "%s: %s\n", pp.name, e.what());
    CHECK(false);
    return;
  }
  CHECK(used == pp.payload.size());
  for (size_t i = 0; i < params.size(); ++i) {
    CHECK(side[i].qp == pp.tensors[i].qp);
    CHECK(fnv1a64(levels[i]) == pp.tensors[i].fnv);
  }
  // encode back: the same bytes (NNCodec's init-set choice and binarization)
  std::vector<nnr::TensorSide> enc_side(params.size());
  std::vector<const int32_t*> ins;
  for (size_t i = 0; i < params.size(); ++i) {
    enc_side[i].qp = side[i].qp;
    enc_side[i].hdsp = side[i].hdsp;
    enc_side[i].row_skip_enabled = side[i].row_skip_enabled;
    enc_side[i].row_skip = side[i].row_skip;
    ins.push_back(levels[i].data());
  }
  const auto again = nnr::encode_payload(params, ins, enc_side, true);
  CHECK(again == pp.payload);
  if (again != pp.payload) std::fprintf(stderr, "  %s: re-encoded payload differs\n", pp.name);
}

}  // namespace

int main() {
  CHECK(kPinned.size() >= 5);
  for (const auto& pp : kPinned) pinned(pp);
  return check::result("test_pinned_payloads");
}
