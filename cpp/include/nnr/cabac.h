// DeepCABAC arithmetic coding engine and dual-rate context models (ISO/IEC 15938-17).
//
// Layers: Context (probability state) -> BinEncoder / BinDecoder (arithmetic engine) ->
// binarization and the tensor loop (tensor_coder.cpp). The decoder never reads past the
// buffer it was given: a read beyond the end throws Error(Truncated).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "nnr/errors.h"
#include "nnr/tables.h"

namespace nnr {

// One adaptive binary context: fast state S0, combined state S0 + S1 (S1 the slow state,
// stored as S0plusS1 = S1 + 16*S0), two window shifts and the index of its init set.
class Context {
 public:
  void init(int set = 0) {
    init_set_ = static_cast<uint8_t>(set);
    const int16_t* e = tables::kInitSets[set];
    s01_ = e[2];
    s0_ = static_cast<int8_t>(e[3]);
    shifts_ = static_cast<uint8_t>(e[0] + 4 + (e[1] << 4));
  }
  void reset() {
    const int16_t* e = tables::kInitSets[init_set_];
    s01_ = e[2];
    s0_ = static_cast<int8_t>(e[3]);
  }
  void update(uint32_t bin) {
    const int sign = bin ? 1 : -1;
    int s1 = s01_ - s0_ * 16;
    const int sh0 = shifts_ & 15, sh1 = shifts_ >> 4;
    s0_ = static_cast<int8_t>(s0_ + sign * (tables::kUpdateCurve[16 + ((sign * s0_) >> 3)] >> sh0));
    s1 += sign * (tables::kUpdateCurve[16 + ((sign * s1) >> 7)] >> sh1);
    s01_ = static_cast<int16_t>(s1 + 16 * s0_);
  }
  uint32_t rlps(uint32_t range) const {
    int d = s01_ >> 7;
    if (d < 0) d = -d;
    return tables::kLpsTable[d + (range & 0xE0)];
  }
  uint32_t mps() const { return s01_ >= 0 ? 1u : 0u; }
  // Estimated cost of coding `bin` in 1/32768 bit.
  uint32_t cost(uint32_t bin) const { return tables::kEstBits[512 + (s01_ >> 3)][bin]; }
  int init_set() const { return init_set_; }

 private:
  int8_t s0_ = 0;
  int16_t s01_ = 0;
  uint8_t shifts_ = 0;
  uint8_t init_set_ = 0;
};

// Tracks one context under all 9 init sets at once, adding up the estimated bits of each;
// the encoder uses it to choose the init set it signals per context.
class ContextSetEstimator {
 public:
  void init() {
    for (int i = 0; i < 9; ++i) { ctx_[i].init(i); bits_[i] = 0; }
  }
  void reset() {
    for (auto& c : ctx_) c.reset();
  }
  void code(uint32_t bin) {
    for (int i = 0; i < 9; ++i) {
      bits_[i] += ctx_[i].cost(bin);
      ctx_[i].update(bin);
    }
  }
  // Cheapest set; any set but 0 pays 3 bits for its signalling (ties keep the lower index).
  int best() const {
    int best = 0;
    uint64_t min_bits = bits_[0];
    for (int i = 1; i < 9; ++i) {
      const uint64_t b = bits_[i] + 3u * 32768u;
      if (b < min_bits) { best = i; min_bits = b; }
    }
    return best;
  }

 private:
  Context ctx_[9];
  uint64_t bits_[9] = {};
};

class BinEncoder {
 public:
  explicit BinEncoder(std::vector<uint8_t>& out) : out_(out) {}
  void encode(uint32_t bin, Context& ctx);
  void encode_bypass(uint32_t bin);
  void encode_bypass_bins(uint32_t bins, uint32_t count);  // MSB first
  void encode_terminate(uint32_t bin);
  void finish();  // after encode_terminate(1): flush, stop bit, zero padding
  void entry_point_start() { range_ = 256; }

 private:
  void write_out();
  std::vector<uint8_t>& out_;
  uint32_t low_ = 0;
  uint32_t range_ = 510;
  uint32_t bits_left_ = 23;
  uint8_t buffered_byte_ = 0;
  uint32_t num_buffered_ = 0;
};

class BinDecoder {
 public:
  BinDecoder(const uint8_t* data, size_t size);
  BinDecoder(const BinDecoder&) = default;
  BinDecoder& operator=(const BinDecoder&) = default;
  uint32_t decode(Context& ctx);
  uint32_t decode_bypass();
  uint32_t decode_bypass_bins(uint32_t count);  // count <= 32
  uint32_t decode_terminate();
  void entry_point_start() { range_ = 256; }
  // Bits the value register has shifted in since the start of the payload (NNCodec's P).
  uint64_t bit_position() const { return 8ull * pos_ - 8 + static_cast<int64_t>(bits_needed_); }
  uint32_t offset9() const { return value_ >> 7; }
  size_t bytes_read() const { return pos_; }
  // True when the last byte consumed ends with the stop bit and zero padding.
  bool stop_pattern_ok() const;
  // A decoder on the same buffer resumed at an entry point: `bit_position` as returned by
  // bit_position(), `offset9` the signalled 9-bit offset (< 256); range 256.
  BinDecoder at_entry_point(uint64_t bit_position, uint32_t offset9) const;

 private:
  uint32_t next_byte() {
    if (pos_ >= size_) throw Error(ErrorKind::Truncated, "CABAC payload ends early", static_cast<std::ptrdiff_t>(size_));
    return data_[pos_++];
  }
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  uint32_t range_ = 510;
  uint32_t value_ = 0;
  int32_t bits_needed_ = -8;
};

// ---- hot paths, inline so that the tensor loop keeps the coder state in registers

inline void BinEncoder::encode(uint32_t bin, Context& ctx) {
  const uint32_t lps = ctx.rlps(range_);
  range_ -= lps;
  if (bin == ctx.mps()) {
    if (range_ < 256) {
      range_ += range_;
      low_ += low_;
      bits_left_ -= 1;
      if (bits_left_ < 12) write_out();
    }
  } else {
    const uint32_t n = uint32_t(__builtin_clz(lps)) - 23;
    low_ += range_;
    range_ = lps << n;
    low_ <<= n;
    bits_left_ -= n;
    if (bits_left_ < 12) write_out();
  }
  ctx.update(bin);
}

inline uint32_t BinDecoder::decode(Context& ctx) {
  const uint32_t lps = ctx.rlps(range_);
  const uint32_t mps_range = range_ - lps;
  // Branch-free: is_lps is all ones when the offset falls into the LPS sub-range.
  const int32_t is_lps = int32_t(mps_range + ~(value_ >> 7)) >> 31;
  range_ = mps_range ^ ((mps_range ^ lps) & uint32_t(is_lps));
  value_ -= (mps_range << 7) & uint32_t(is_lps);
  const uint32_t bin = ctx.mps() ^ uint32_t(is_lps & 1);
  const uint32_t n = uint32_t(__builtin_clz(range_)) - 23;
  range_ <<= n;
  value_ <<= n;
  bits_needed_ += static_cast<int32_t>(n);
  if (bits_needed_ >= 0) {
    value_ += next_byte() << bits_needed_;
    bits_needed_ -= 8;
  }
  ctx.update(bin);
  return bin;
}

}  // namespace nnr
