// decode_payload on truncated and corrupted payloads: it throws nnr::Error (Truncated for a
// payload cut short), never reads a byte past the buffer (the buffer ends at an inaccessible
// page), never writes past the output, and rejects out-of-range parameters.
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "nnr/tensor_coder.h"

namespace {

struct Case {
  std::string name;
  nnr::TensorParams p;
  bool row_skip = false;
  bool hdsp = false;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  auto add = [&](const std::string& name, uint32_t rows, uint32_t cols, int scan, bool dq) {
    Case c;
    c.name = name;
    c.p.rows = rows;
    c.p.cols = cols;
    c.p.scan_order = scan;
    c.p.dq = dq;
    out.push_back(c);
    return &out.back();
  };
  add("raster", 17, 23, 0, false);
  add("raster dq", 17, 23, 0, true);
  for (int s = 1; s <= 4; ++s) add("scan " + std::to_string(s), 70, 9 + 8 * s, s, s % 2 == 0);
  add("1-D", 300, 1, 0, false);
  add("int", 12, 12, 0, false)->p.has_qp = false;
  {
    Case* c = add("codebook", 20, 20, 0, false);
    c->p.codebook_size = 7;
    c->p.codebook_zero_offset = 3;
  }
  {
    Case* c = add("codebook sign inferred", 20, 20, 2, false);
    c->p.codebook_size = 5;
    c->p.codebook_zero_offset = 0;
  }
  add("row skip", 40, 12, 0, true)->row_skip = true;
  {
    Case* c = add("legacy v0.3", 33, 17, 1, true);
    c->p.legacy_v03 = true;
    c->p.profile = 0;
  }
  {
    Case* c = add("hdsp", 16, 16, 0, true);
    c->p.parent_node_id_present = true;
    c->hdsp = true;
  }
  add("short unary", 16, 16, 0, false)->p.num_gtx = 1;
  return out;
}

// Levels representable for the case: small, mostly zero, in the codebook range, whole rows
// of zeros where rows are skipped; DQ levels valid for the trellis states.
std::vector<int32_t> levels(const Case& c, std::mt19937& rng, std::vector<uint8_t>* row_skip) {
  const nnr::TensorParams& p = c.p;
  std::vector<int32_t> q(p.size());
  std::uniform_int_distribution<int> mag(-40, 40);
  for (auto& v : q) {
    const int r = int(rng() % 100);
    v = r < 55 ? 0 : (r < 90 ? mag(rng) % 3 : mag(rng));
    if (p.codebook_size) {
      const int lo = -int(p.codebook_zero_offset), hi = int(p.codebook_size - p.codebook_zero_offset) - 1;
      v = v < lo ? lo : (v > hi ? hi : v);
    }
  }
  if (c.row_skip) {
    row_skip->assign(p.rows, 0);
    for (uint32_t r = 0; r < p.rows; r += 3) {
      (*row_skip)[r] = 1;
      for (uint32_t x = 0; x < p.cols; ++x) q[uint64_t(r) * p.cols + x] = 0;
    }
  }
  if (!p.dq) return q;
  // q are quantization indices; convert to multipliers k along the scan (raster or blocks).
  static constexpr int next[8][2] = {{0, 2}, {7, 5}, {1, 3}, {6, 4}, {2, 0}, {5, 7}, {3, 1}, {4, 6}};
  std::vector<int32_t> k(q.size());
  const int scan = p.effective_scan();
  const uint32_t bw = scan ? (4u << scan) : p.cols, bh = scan ? (4u << scan) : p.rows;
  int state = 0;
  for (uint32_t y0 = 0; y0 < p.rows; y0 += bh)
    for (uint32_t x0 = 0; x0 < p.cols; x0 += bw)
      for (uint32_t y = y0; y < std::min(p.rows, y0 + bh); ++y) {
        if (c.row_skip && (*row_skip)[y]) {
          for (uint32_t a = 0; a < p.cols; ++a) state = next[state][0];
          continue;
        }
        for (uint32_t x = x0; x < std::min(p.cols, x0 + bw); ++x) {
          const int32_t v = q[uint64_t(y) * p.cols + x];
          k[uint64_t(y) * p.cols + x] = v == 0 ? 0 : 2 * v + (v < 0 ? (state & 1) : -(state & 1));
          state = next[state][v & 1];
        }
      }
  return k;
}

struct Outcome {
  bool threw = false;
  nnr::ErrorKind kind = nnr::ErrorKind::Config;
  size_t used = 0;
  std::vector<int32_t> out;
};

Outcome run_decode(const uint8_t* data, size_t size, const nnr::TensorParams& p) {
  Outcome o;
  // one guard word after the output: decode_payload must not write past params.size()
  o.out.assign(p.size() + 1, 0x5A5A5A5A);
  std::vector<nnr::TensorSide> side;
  try {
    o.used = nnr::decode_payload(data, size, {p}, {o.out.data()}, side);
  } catch (const nnr::Error& e) {
    o.threw = true;
    o.kind = e.kind();
  }
  CHECK(o.out.back() == 0x5A5A5A5A);
  o.out.pop_back();
  return o;
}

void truncation_and_corruption() {
  std::mt19937 rng(1234);
  for (const Case& c : cases()) {
    std::vector<uint8_t> row_skip;
    const auto k = levels(c, rng, &row_skip);
    std::vector<uint8_t> hist;
    nnr::TensorParams p = c.p;
    if (c.hdsp) {
      hist.resize(p.size());
      for (auto& h : hist) h = uint8_t(rng() & 1);
      p.hdsp_hist = hist.data();
    }
    std::vector<nnr::TensorSide> side(1);
    side[0].qp = -17;
    side[0].hdsp = c.hdsp;
    if (c.row_skip) {
      side[0].row_skip_enabled = true;
      side[0].row_skip = row_skip;
    }
    const auto bytes = nnr::encode_payload({p}, {k.data()}, side, true);

    {  // the whole payload decodes to the levels and is consumed exactly
      check::GuardedBuffer buf(bytes);
      const Outcome o = run_decode(buf.data(), buf.size(), p);
      CHECK(!o.threw);
      CHECK(o.used == bytes.size());
      CHECK(o.out == k);
      if (o.threw || o.out != k) std::fprintf(stderr, "  case: %s\n", c.name.c_str());
    }
    // every prefix: Truncated (the last two bytes may not be needed to decode the levels;
    // then the payload end is reported as non-conforming or the consumed count is short)
    for (size_t n = 0; n < bytes.size(); ++n) {
      check::GuardedBuffer buf(bytes.data(), n);
      const Outcome o = run_decode(buf.data(), buf.size(), p);
      if (n + 2 < bytes.size()) {
        CHECK(o.threw && o.kind == nnr::ErrorKind::Truncated);
      } else {
        CHECK(o.threw || o.used <= n);
      }
    }
    // bit flips and random bytes: any outcome but a crash, a read or write out of bounds
    for (int t = 0; t < 300; ++t) {
      std::vector<uint8_t> bad = bytes;
      const int flips = 1 + int(rng() % 4);
      for (int f = 0; f < flips; ++f) bad[rng() % bad.size()] ^= uint8_t(1u << (rng() % 8));
      if (t % 10 == 0) bad.resize(rng() % (bad.size() + 1));
      check::GuardedBuffer buf(bad);
      const Outcome o = run_decode(buf.data(), buf.size(), p);
      CHECK(o.threw || o.used <= bad.size());
      CHECK(!o.threw || o.kind == nnr::ErrorKind::Truncated || o.kind == nnr::ErrorKind::NonConforming);
    }
  }
}

// Parameters a stream cannot carry are refused before any bit is decoded.
void parameter_checks() {
  const uint8_t payload[4] = {0x00, 0x00, 0x00, 0x80};
  check::GuardedBuffer buf(payload, sizeof payload);
  auto refused = [&](const nnr::TensorParams& p) {
    const Outcome o = run_decode(buf.data(), buf.size(), p);
    return o.threw && (o.kind == nnr::ErrorKind::NonConforming || o.kind == nnr::ErrorKind::Config);
  };
  nnr::TensorParams p;
  p.rows = 4;
  p.cols = 4;
  for (int s : {-1, 5, 15, 255}) {
    nnr::TensorParams q = p;
    q.scan_order = s;
    CHECK(refused(q));
  }
  for (int bits : {0, 33, -3}) {
    nnr::TensorParams q = p;
    q.qp_bits = bits;
    CHECK(refused(q));
  }
  for (uint32_t gtx : {0u, 257u}) {
    nnr::TensorParams q = p;
    q.num_gtx = gtx;
    CHECK(refused(q));
  }
  {
    nnr::TensorParams q = p;
    q.codebook_size = 3;
    q.codebook_zero_offset = 3;
    CHECK(refused(q));
  }
  // one output buffer per tensor
  std::vector<nnr::TensorSide> side;
  bool threw = false;
  try {
    nnr::decode_payload(buf.data(), buf.size(), {p, p}, {nullptr}, side);
  } catch (const nnr::Error& e) {
    threw = e.kind() == nnr::ErrorKind::Config;
  }
  CHECK(threw);
}

// A one-entry codebook codes no bins: any size decodes from the termination alone.
void one_entry_codebook() {
  nnr::TensorParams p;
  p.rows = 64;
  p.cols = 64;
  p.codebook_size = 1;
  p.has_qp = false;
  std::vector<int32_t> k(p.size(), 0);
  std::vector<nnr::TensorSide> side(1);
  const auto bytes = nnr::encode_payload({p}, {k.data()}, side, true);
  CHECK(bytes.size() <= 3);
  check::GuardedBuffer buf(bytes);
  const Outcome o = run_decode(buf.data(), buf.size(), p);
  CHECK(!o.threw && o.out == k);
}

// Parallel block-row decoding from the signalled entry points: the same levels as the
// sequential decoder; a wrong entry point where a chunk starts is an error, never a crash.
void parallel_block_rows() {
  std::mt19937 rng(77);
  Case c;
  c.name = "parallel";
  c.p.rows = 200;
  c.p.cols = 40;
  c.p.scan_order = 1;
  c.p.dq = true;
  std::vector<uint8_t> no_skip;
  const auto k = levels(c, rng, &no_skip);
  std::vector<nnr::TensorSide> enc_side(1);
  const auto bytes = nnr::encode_payload({c.p}, {k.data()}, enc_side, true);
  check::GuardedBuffer buf(bytes);
  std::vector<int32_t> seq(c.p.size());
  std::vector<nnr::TensorSide> side;
  CHECK(nnr::decode_payload(buf.data(), buf.size(), {c.p}, {seq.data()}, side) == bytes.size());
  CHECK(seq == k);
  const auto& eps = side[0].entry_points;
  CHECK(eps.size() + 1 == c.p.block_rows());
  std::vector<nnr::EntryPointState> deltas;
  uint64_t prev = side[0].level_start_bit;
  for (const auto& e : eps) {
    deltas.push_back({e.bit_position - prev, e.cabac_offset, e.dq_state});
    prev = e.bit_position;
  }
  auto run = [&](const std::vector<nnr::EntryPointState>& d, int threads) {
    nnr::TensorParams p = c.p;
    p.entry_point_deltas = d;
    p.threads = threads;
    return run_decode(buf.data(), buf.size(), p);
  };
  for (int threads : {2, 3, 4, 8, 64}) {
    const Outcome o = run(deltas, threads);
    CHECK(!o.threw && o.used == bytes.size() && o.out == k);
  }
  // chunk starts for 4 threads over 25 block rows: rows 6, 12, 18 (entry points 5, 11, 17)
  for (size_t j : {size_t(5), size_t(11), size_t(17)}) {
    for (int field = 0; field < 3; ++field) {
      auto bad = deltas;
      if (field == 0) bad[j].bit_position += 1;
      if (field == 1) bad[j].cabac_offset ^= 1;
      if (field == 2) bad[j].dq_state ^= 1;
      const Outcome o = run(bad, 4);
      CHECK(o.threw);
    }
  }
  // far outside the payload, at its very end, and random values: errors, no stray reads
  for (uint64_t far : {uint64_t(1) << 40, uint64_t(8) * bytes.size(), ~uint64_t(0) - 4}) {
    auto bad = deltas;
    bad[11].bit_position = far;
    const Outcome o = run(bad, 4);
    CHECK(o.threw);
  }
  for (int t = 0; t < 200; ++t) {
    auto bad = deltas;
    for (auto& d : bad) {
      if (rng() % 4 == 0) d.bit_position = rng() % (8 * bytes.size() + 64);
      if (rng() % 8 == 0) d.cabac_offset = rng() % 300;
      if (rng() % 8 == 0) d.dq_state = rng() % 9;
    }
    const Outcome o = run(bad, 2 + int(rng() % 6));
    CHECK(o.threw || o.used <= bytes.size());
  }
}

}  // namespace

int main() {
  truncation_and_corruption();
  parameter_checks();
  one_entry_codebook();
  parallel_block_rows();
  return check::result("test_bounded_reads");
}
