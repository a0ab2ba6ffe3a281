// The optimized CABAC decoder and context model against a plain transcription of NNCodec's
// (the byte-wise decoder and the S0 / S0plusS1 context of the reference): the context model
// agrees on every state reachable from every init set, and the decoder returns the same bins,
// positions and Truncated errors, op by op (context-coded, bypass, bypass groups, terminating
// bins, entry points, resumption at entry points), on random bytes of several kinds (including
// the invalid states an entry point leaves on corrupt data) and on every truncation of some.
#include <random>
#include <unordered_map>
#include <vector>

#include "check.h"
#include "nnr/cabac.h"

namespace {

// ------------------------------------------------------------------ reference transcription

struct RefContext {
  int8_t s0 = 0;
  int16_t s01 = 0;
  int sh0 = 0, sh1 = 0;
  void init(int set) {
    const int16_t* e = nnr::tables::kInitSets[set];
    s01 = e[2];
    s0 = int8_t(e[3]);
    sh0 = e[0] + 4;
    sh1 = e[1];
  }
  void update(uint32_t bin) {
    const int sign = bin ? 1 : -1;
    int s1 = s01 - s0 * 16;
    s0 = int8_t(s0 + sign * (nnr::tables::kUpdateCurve[16 + ((sign * s0) >> 3)] >> sh0));
    s1 += sign * (nnr::tables::kUpdateCurve[16 + ((sign * s1) >> 7)] >> sh1);
    s01 = int16_t(s1 + 16 * s0);
  }
  uint32_t rlps(uint32_t range) const {
    int d = s01 >> 7;
    if (d < 0) d = -d;
    return nnr::tables::kLpsTable[d + (range & 0xE0)];
  }
  uint32_t mps() const { return s01 >= 0 ? 1u : 0u; }
};

struct Truncated {};

class RefDecoder {
 public:
  RefDecoder(const uint8_t* data, size_t size) : data_(data), size_(size) {
    const uint32_t b0 = next_byte();
    const uint32_t b1 = next_byte();
    value_ = (b0 << 8) | b1;
  }
  uint32_t decode(RefContext& ctx) {
    const uint32_t lps = ctx.rlps(range_);
    const uint32_t mps_range = range_ - lps;
    const int32_t is_lps = int32_t(mps_range + ~(value_ >> 7)) >> 31;
    range_ = mps_range ^ ((mps_range ^ lps) & uint32_t(is_lps));
    value_ -= (mps_range << 7) & uint32_t(is_lps);
    const uint32_t bin = ctx.mps() ^ uint32_t(is_lps & 1);
    const uint32_t n = uint32_t(__builtin_clz(range_)) - 23;
    range_ <<= n;
    value_ <<= n;
    bits_needed_ += int32_t(n);
    if (bits_needed_ >= 0) {
      value_ += next_byte() << bits_needed_;
      bits_needed_ -= 8;
    }
    ctx.update(bin);
    return bin;
  }
  uint32_t decode_bypass() {
    value_ += value_;
    if (++bits_needed_ >= 0) {
      value_ += next_byte();
      bits_needed_ = -8;
    }
    const uint32_t scaled = range_ << 7;
    if (value_ >= scaled) {
      value_ -= scaled;
      return 1;
    }
    return 0;
  }
  uint32_t decode_bypass_bins(uint32_t count) {
    if (range_ == 256) {
      uint32_t bins = 0;
      while (count > 0) {
        const uint32_t n = count < 8 ? count : 8;
        bins = (bins << n) | ((value_ >> (15 - n)) & ((1u << n) - 1));
        value_ = (value_ << n) & 0x7FFF;
        count -= n;
        bits_needed_ += int32_t(n);
        if (bits_needed_ >= 0) {
          value_ |= next_byte() << bits_needed_;
          bits_needed_ -= 8;
        }
      }
      return bins;
    }
    uint32_t bins = 0;
    for (uint32_t i = 0; i < count; ++i) bins = (bins << 1) | decode_bypass();
    return bins;
  }
  uint32_t decode_terminate() {
    range_ -= 2;
    const uint32_t scaled = range_ << 7;
    if (value_ >= scaled) return 1;
    if (range_ < 256) {
      range_ += range_;
      value_ += value_;
      if (++bits_needed_ == 0) {
        value_ += next_byte();
        bits_needed_ = -8;
      }
    }
    return 0;
  }
  void entry_point_start() { range_ = 256; }
  uint64_t bit_position() const { return 8ull * pos_ - 8 + int64_t(bits_needed_); }
  uint32_t offset9() const { return value_ >> 7; }
  size_t bytes_read() const { return pos_; }
  bool stop_pattern_ok() const {
    if (pos_ == 0) return false;
    const uint32_t last = data_[pos_ - 1];
    return ((last << (8 + bits_needed_)) & 0xFF) == 0x80;
  }
  // at_entry_point for positions inside the buffer (the caller checks the bounds)
  RefDecoder at_entry_point(uint64_t bit_position, uint32_t offset9) const {
    RefDecoder d(*this);
    const uint64_t bits = bit_position + 9;
    const uint64_t bit_off = bits & 7;
    uint64_t bytes = bits >> 3;
    int32_t needed = int32_t(bit_off) - 9;
    if (bit_off != 0)
      bytes++;
    else
      needed += 8;
    d.pos_ = size_t(bytes);
    d.bits_needed_ = needed;
    d.range_ = 256;
    d.value_ = (offset9 << 7) + ((uint32_t(data_[bytes - 1]) << (8 + needed)) & 127);
    return d;
  }

 private:
  uint32_t next_byte() {
    if (pos_ >= size_) throw Truncated();
    return data_[pos_++];
  }
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  uint32_t range_ = 510;
  uint32_t value_ = 0;
  int32_t bits_needed_ = -8;
};

// ------------------------------------------------------------------ context model

// Breadth-first over the states reachable from each init set: the optimized context, driven by
// the same bins, has the same S0plusS1, MPS, rLPS (all range rows) and estimated costs.
void contexts_agree() {
  for (int set = 0; set < 9; ++set) {
    RefContext r0;
    r0.init(set);
    nnr::Context c0;
    c0.init(set);
    std::unordered_map<uint32_t, bool> seen;
    std::vector<std::pair<RefContext, nnr::Context>> todo{{r0, c0}};
    long bad = 0;
    while (!todo.empty()) {
      auto [r, c] = todo.back();
      todo.pop_back();
      const uint32_t key = uint32_t(uint8_t(r.s0)) << 16 | uint16_t(r.s01);
      if (!seen.emplace(key, true).second) continue;
      bad += c.state() != r.s01 || c.mps() != r.mps() || c.init_set() != set;
      for (uint32_t range = 256; range < 512; range += 32) bad += c.rlps(range) != r.rlps(range);
      for (uint32_t bin = 0; bin < 2; ++bin)
        bad += c.cost(bin) != nnr::tables::kEstBits[512 + (r.s01 >> 3)][bin];
      for (uint32_t bin = 0; bin < 2; ++bin) {
        RefContext r2 = r;
        nnr::Context c2 = c;
        r2.update(bin);
        c2.update(bin);
        todo.push_back({r2, c2});
      }
      nnr::Context c3 = c;  // reset returns to the init state
      c3.reset();
      bad += c3.state() != r0.s01;
    }
    CHECK(bad == 0);
    CHECK(seen.size() > 3000);
  }
}

// ------------------------------------------------------------------ decoder

enum class Op { Ctx, Bypass, BypassBins, Terminate, EntryPoint, Resume };

// Runs the same random ops on both decoders and compares every result; a Truncated error must
// come from the same op in both. Returns the number of ops run.
long compare(const uint8_t* data, size_t size, std::mt19937& rng, int nops) {
  std::vector<RefContext> rctx(6);
  std::vector<nnr::Context> ctx(6);
  for (size_t i = 0; i < ctx.size(); ++i) {
    const int set = int(rng() % 9);
    rctx[i].init(set);
    ctx[i].init(set);
  }
  bool ref_threw = false, opt_threw = false;
  RefDecoder* ref = nullptr;
  nnr::BinDecoder* opt = nullptr;
  try {
    ref = new RefDecoder(data, size);
  } catch (const Truncated&) {
    ref_threw = true;
  }
  try {
    opt = new nnr::BinDecoder(data, size);
  } catch (const nnr::Error& e) {
    opt_threw = true;
    CHECK(e.kind() == nnr::ErrorKind::Truncated && e.offset() == std::ptrdiff_t(size));
  }
  CHECK(ref_threw == opt_threw);
  long ops = 0;
  for (int i = 0; i < nops && ref && opt && !ref_threw && !opt_threw; ++i, ++ops) {
    const int k = int(rng() % 100);
    const Op op = k < 60 ? Op::Ctx : k < 72 ? Op::Bypass : k < 84 ? Op::BypassBins
                : k < 92 ? Op::Terminate : k < 97 ? Op::EntryPoint : Op::Resume;
    const size_t c = rng() % ctx.size();
    const uint32_t count = uint32_t(rng() % 33);
    uint32_t a = 0, b = 0;
    try {
      switch (op) {
        case Op::Ctx: a = ref->decode(rctx[c]); break;
        case Op::Bypass: a = ref->decode_bypass(); break;
        case Op::BypassBins: a = ref->decode_bypass_bins(count); break;
        case Op::Terminate: a = ref->decode_terminate(); break;
        case Op::EntryPoint: ref->entry_point_start(); break;
        case Op::Resume: break;
      }
    } catch (const Truncated&) {
      ref_threw = true;
    }
    try {
      switch (op) {
        case Op::Ctx: b = opt->decode(ctx[c]); break;
        case Op::Bypass: b = opt->decode_bypass(); break;
        case Op::BypassBins: b = opt->decode_bypass_bins(count); break;
        case Op::Terminate: b = opt->decode_terminate(); break;
        case Op::EntryPoint: opt->entry_point_start(); break;
        case Op::Resume: {
          // resume both at the current position with a random valid offset
          const uint64_t p = ref->bit_position();
          const uint32_t off = uint32_t(rng() % 256);
          if ((p + 9 + 7) / 8 <= size) {
            *ref = ref->at_entry_point(p, off);
            *opt = opt->at_entry_point(p, off);
          }
          break;
        }
      }
    } catch (const nnr::Error& e) {
      opt_threw = true;
      CHECK(e.kind() == nnr::ErrorKind::Truncated && e.offset() == std::ptrdiff_t(size));
    }
    CHECK(ref_threw == opt_threw);
    if (ref_threw || opt_threw) break;
    const bool same = a == b && ref->bit_position() == opt->bit_position() && ref->offset9() == opt->offset9() &&
                      ref->bytes_read() == opt->bytes_read() &&
                      ref->stop_pattern_ok() == opt->stop_pattern_ok() && rctx[c].s01 == ctx[c].state();
    CHECK(same);
    if (!same) break;
    if (op == Op::Terminate && a == 1) break;  // the payload has ended: nothing may follow
  }
  delete ref;
  delete opt;
  return ops;
}

void decoders_agree() {
  std::mt19937 rng(15938);
  long ops = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    // garbage of any length, biased bytes for long MPS runs, and every truncation of some
    std::vector<uint8_t> bytes(size_t(rng() % 96));
    const int mode = trial % 3;
    for (auto& x : bytes) x = uint8_t(mode == 0 ? rng() : mode == 1 ? (rng() % 4 ? 0 : rng()) : (rng() % 4 ? 0xFF : rng()));
    check::GuardedBuffer buf(bytes);
    ops += compare(buf.data(), buf.size(), rng, 4000);
    if (trial % 50 == 0)
      for (size_t n = 0; n < bytes.size(); ++n) {
        check::GuardedBuffer cut(bytes.data(), n);
        std::mt19937 r2(uint32_t(trial * 1000 + n));
        ops += compare(cut.data(), cut.size(), r2, 4000);
      }
  }
  CHECK(ops > 100000);
}

}  // namespace

int main() {
  contexts_agree();
  decoders_agree();
  return check::result("test_engine_reference");
}
