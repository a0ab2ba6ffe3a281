// DeepCABAC arithmetic coding engine and dual-rate context models (ISO/IEC 15938-17).
//
// Layers: Context (probability state) -> BinEncoder / BinDecoder (arithmetic engine) ->
// binarization and the tensor loop (tensor_coder.cpp). The decoder never reads past the
// buffer it was given: a read beyond the end throws Error(Truncated).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

#include "nnr/errors.h"
#include "nnr/tables.h"

// The bin coders' hot paths must be inlined into the tensor loops (their state then lives in
// registers); GCC's and Clang's inliner may otherwise give up on a large loop body.
#if defined(__GNUC__)
#define NNR_HOT_INLINE inline __attribute__((always_inline))
#else
#define NNR_HOT_INLINE inline
#endif

namespace nnr {

// One adaptive binary context: fast state S0 and slow state S1 (the reference keeps S0 and
// S0plusS1 = S1 + 16*S0), two window shifts given by the index of its init set.
//
// Kept as x = 16*S0 and y = S1, all int16 (no char-typed member: stores into the contexts then
// cannot alias the coder state in the compiler's eyes). S0plusS1 = x + y, and both states
// index the update curve by >> 7, as (16*S0) >> 7 == S0 >> 3. The reference update
//   s += sign * (kUpdateCurve[16 + ((sign * s) >> k)] >> shift),  sign = bin ? 1 : -1
// becomes one lookup per state: for bin 1 the curve index is 16 + (s >> 7); for bin 0 it is
// 16 + ((-s) >> 7) = 16 - ceil(s / 128) = 15 - ((s - 1) >> 7). So ((s + bin - 1) >> 7) + 16
// selects the entry in both cases, and the row of the init set (tables::kEngine.update) holds
// the signed, shifted delta there. Every reachable state keeps S0 in [-123, 123] and S1 in
// [-1923, 1923] (exhaustive search from all 9 init sets; cpp/tests/test_engine_reference.cpp
// checks this model against the reference on all of them), so no index leaves its table and
// S0 never wraps as the reference's int8 could.
class Context {
 public:
  void init(int set = 0) {
    set_ = static_cast<int16_t>(set);
    update_ = tables::kEngine.update + tables::EngineTables::kUpdateRow * set;
    reset();
  }
  void reset() {
    const int16_t* e = tables::kInitSets[set_];
    x_ = static_cast<int16_t>(16 * e[3]);
    y_ = static_cast<int16_t>(e[2] - 16 * e[3]);
  }
  void update(uint32_t bin) {
    const intptr_t bias = intptr_t(bin) - 1;
    const int16_t* t = update_ + 64 * bin + 16;
    x_ = static_cast<int16_t>(x_ + t[(intptr_t(x_) + bias) >> 7]);
    y_ = static_cast<int16_t>(y_ + t[32 + ((intptr_t(y_) + bias) >> 7)]);
  }
  // S0plusS1: its sign is the MPS, its magnitude >> 7 the probability distance. (intptr_t: the
  // same sign-extended loads serve update()'s table indices.)
  intptr_t state() const { return intptr_t(x_) + intptr_t(y_); }
  uint32_t rlps(uint32_t range) const {
    return tables::kEngine.lps[8 * (state() >> 7) + intptr_t(range >> 5) + (8 * 32 - 8)];
  }
  uint32_t mps() const { return state() >= 0 ? 1u : 0u; }
  // Estimated cost of coding `bin` in 1/32768 bit.
  uint32_t cost(uint32_t bin) const { return tables::kEstBits[512 + (state() >> 3)][bin]; }
  int init_set() const { return set_; }
  intptr_t state_x() const { return x_; }  // 16 * S0 (for InitSetEstimator)

 private:
  int16_t x_ = 0;    // 16 * S0
  int16_t y_ = 0;    // S1
  int16_t set_ = 0;  // init set
  const int16_t* update_ = tables::kEngine.update;  // the row of the set's window shifts
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
  uint64_t bits(int set) const { return bits_[set]; }  // estimated bits of a set, 1/32768 bit
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

// The same estimate as one ContextSetEstimator per context, computed in batches: the bins of
// each context are recorded as they come, and replayed later, one init set at a time, in a
// loop that keeps that set's state and bit count in registers (instead of updating 9 states in
// memory per bin). A context's 9 tracks only depend on its own bins in order, and the sums are
// integers, so the order of the replay does not matter: the bits (and so best()) are exactly
// ContextSetEstimator's. reset() replays what is pending before the states go back to their
// init. Each context records into a fixed, aligned chunk of kChunk bins (a store and a
// pointer increment per bin); a full chunk is replayed at once, so any number of bins may be
// recorded between flushes.
class InitSetEstimator {
 public:
  explicit InitSetEstimator(size_t num_contexts);
  InitSetEstimator(const InitSetEstimator&) = delete;
  InitSetEstimator& operator=(const InitSetEstimator&) = delete;
  void record(uint32_t bin, int ctx) {
    uint8_t*& p = next_[size_t(ctx)];
    *p++ = uint8_t(bin);
    if (__builtin_expect((reinterpret_cast<uintptr_t>(p) & (kChunk - 1)) == 0, 0)) replay(size_t(ctx));
  }
  void flush();
  void reset() {
    flush();
    for (Track& t : tracks_) t.reset();
  }
  // Cheapest set of a context (flush() first); the rule of ContextSetEstimator::best().
  int best(int ctx) const;
  uint64_t bits(int ctx, int set) const { return tracks_[size_t(ctx)].bits[set]; }  // flush() first

 private:
  static constexpr size_t kChunk = size_t(1) << 16;  // bins per context chunk (a power of 2)
  void replay(size_t ctx);  // replays the context's pending bins and empties its chunk
  struct Track {
    int16_t x[9], y[9];  // Context's x_ and y_ under each init set
    uint64_t bits[9];
    void init() {
      reset();
      for (uint64_t& b : bits) b = 0;
    }
    void reset() {
      for (int i = 0; i < 9; ++i) {
        Context c;
        c.init(i);
        x[i] = int16_t(c.state_x());
        y[i] = int16_t(c.state() - c.state_x());
      }
    }
  };
  struct Free {
    void operator()(uint8_t* p) const { ::operator delete(p, std::align_val_t(kChunk)); }
  };
  std::vector<Track> tracks_;
  std::unique_ptr<uint8_t, Free> chunks_;  // kChunk bins per context, aligned to kChunk
  std::vector<uint8_t*> next_;             // where each context's next bin goes
};

class BinEncoder {
 public:
  explicit BinEncoder(std::vector<uint8_t>& out) : out_(&out) {}
  void encode(uint32_t bin, Context& ctx);
  void encode_bypass(uint32_t bin);
  void encode_bypass_bins(uint32_t bins, uint32_t count);  // MSB first
  void encode_terminate(uint32_t bin);
  void finish();  // after encode_terminate(1): flush, stop bit, zero padding
  void entry_point_start() { range_ = 256; }

 private:
  void write_out();
  // Appends the low byte of `lead` after adding its carry (bit 8) into the bytes written
  // before it (0xFF bytes become 0x00 and pass the carry on). The reference holds 0xFF bytes
  // back until their carry is known instead; the bytes are the same (a carry never runs past
  // the first byte: the first lead byte of a payload is below 0xFF).
  static void put(std::vector<uint8_t>* out, uint32_t lead);
  static void carry(std::vector<uint8_t>* out);
  std::vector<uint8_t>* out_;  // a pointer, so that a copy can be assigned back (tensor loop)
  uint32_t low_ = 0;
  uint32_t range_ = 510;
  uint32_t bits_left_ = 23;
};

// The decoder keeps NNCodec's 32-bit value register (`value`: the offset scaled by 2^7; bits
// above the 9-bit offset only occur in the invalid states corrupt data can lead to, and wrap
// around as in the reference) in the top half of a 64-bit window whose lower half holds payload
// bits read ahead: window = value << 32 | read-ahead. The range is compared and subtracted
// scaled the same way (range << 39, rLPS from a table scaled alike), so every comparison and
// subtraction of the engine is the reference's, on multiples of 2^39 where the read-ahead bits
// cannot change a decision; the range itself is kept unscaled (see range_). The reference reads a
// byte each time the offset runs out of bits; the window is refilled up to five bytes at a
// time, and `cnt_` counts the bits it holds below the offset's least significant bit (window
// bit 39). When the offset needs a bit (cnt_ < 0) that lies beyond the end of the payload, it
// throws Error(Truncated) at exactly the bin where the reference's byte read throws. Positions
// (bit_position, bytes_read, stop_pattern_ok) are the reference's.
//
// The range is in [256, 510] whenever a bin is decoded. After decode_terminate() returned 1 the
// payload has ended; decoding further bins is meaningless (but still safe).
class BinDecoder {
 public:
  BinDecoder(const uint8_t* data, size_t size);
  BinDecoder(const BinDecoder&) = default;
  BinDecoder& operator=(const BinDecoder&) = default;
  uint32_t decode(Context& ctx);
  // decode() without the context update, for callers that branch on the bin anyway and then
  // update with the constant bin (ctx.update(0) / ctx.update(1) inline to less work).
  uint32_t decode_raw(const Context& ctx);
  uint32_t decode_bypass();
  uint32_t decode_bypass_bins(uint32_t count);  // count <= 32
  uint32_t decode_terminate();
  void entry_point_start() { range_ = 256; }
  // Bits the value register has shifted in since the start of the payload (NNCodec's P).
  uint64_t bit_position() const { return 8ull * pos_ - 9 - static_cast<int64_t>(cnt_); }
  uint32_t offset9() const { return static_cast<uint32_t>(window_ >> 39); }
  // Bytes the reference decoder has read: the offset's bits and the rest of their last byte.
  size_t bytes_read() const { return size_t(bit_position() >> 3) + 2; }
  // True when the last byte consumed ends with the stop bit and zero padding.
  bool stop_pattern_ok() const;
  // A decoder on the same buffer resumed at an entry point: `bit_position` as returned by
  // bit_position(), `offset9` the signalled 9-bit offset (< 256); range 256.
  BinDecoder at_entry_point(uint64_t bit_position, uint32_t offset9) const;

 private:
  // Ensures `need` (<= 32) bits below the offset, reading whole bytes; throws Error(Truncated)
  // when the payload has too few. Inline and without taking the decoder's address, so that a
  // local copy of the decoder stays in registers in the tensor loop.
  void fill(int32_t need) {
    const size_t avail = size_ - pos_;
    uint32_t n = uint32_t(39 - cnt_) >> 3;  // whole bytes that fit below the bits held
    if (n > avail) n = uint32_t(avail);
    if (n > 0) {
      uint64_t bytes = 0;
      if (avail >= 8) {
        const uint8_t* p = data_ + pos_;  // compilers turn this into one load and a byte swap
        bytes = uint64_t(p[0]) << 56 | uint64_t(p[1]) << 48 | uint64_t(p[2]) << 40 | uint64_t(p[3]) << 32 |
                uint64_t(p[4]) << 24 | uint64_t(p[5]) << 16 | uint64_t(p[6]) << 8 | uint64_t(p[7]);
        bytes >>= 64 - 8 * n;
      } else {
        for (uint32_t i = 0; i < n; ++i) bytes = (bytes << 8) | data_[pos_ + i];
      }
      window_ |= bytes << (39 - cnt_ - int32_t(8 * n));
      pos_ += n;
      cnt_ += int32_t(8 * n);
    }
    if (cnt_ < need) truncated(size_);
  }
  [[noreturn]] static void truncated(size_t size);

  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;         // bytes moved into the window
  uint64_t window_ = 0;    // value << 32 | read-ahead bits, zero below the bits held
  // The range in [256, 510], not scaled like the value: the chain from one bin's range to the
  // next is then one load on the MPS path (kEngine.mps_range indexed by the range itself).
  uint32_t range_ = 510;
  int32_t cnt_ = -9;       // bits held below the offset (window bits [39 - cnt_, 39))
};

// ---- hot paths, inline so that the tensor loop keeps the coder state in registers

NNR_HOT_INLINE void BinEncoder::encode(uint32_t bin, Context& ctx) {
  const uint32_t lps = ctx.rlps(range_);
  range_ -= lps;
  // The MPS path renormalizes without a branch (whether its range fell below 256 is close to a
  // coin flip: 12 % faster encoding than branching on it); the MPS / LPS branch stays (a fully
  // branch-free bin measured slower: a longer dependency chain through the range).
  if (bin == ctx.mps()) {
    const uint32_t n = (range_ >> 8) ^ 1;  // MPS range >= 128: at most one bit
    range_ <<= n;
    low_ <<= n;
    bits_left_ -= n;
    if (bits_left_ < 12) write_out();
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

// write_out and encode_bypass_bins are inline too, and the bytes go out through the
// out-of-line put(): a local copy of the encoder whose address is never taken then keeps its
// state (low, range, bits left, the output's address) in registers in the tensor loop (byte
// stores, which may alias anything, and the vector's reallocation stay behind a call that
// cannot see the copy).
inline void BinEncoder::write_out() {
  const uint32_t lead = low_ >> (24 - bits_left_);
  bits_left_ += 8;
  low_ &= 0xFFFFFFFFu >> bits_left_;
  put(out_, lead);
}

inline void BinEncoder::encode_bypass_bins(uint32_t bins, uint32_t count) {
  while (count > 8) {
    count -= 8;
    const uint32_t pattern = bins >> count;
    low_ = (low_ << 8) + range_ * pattern;
    bins -= pattern << count;
    bits_left_ -= 8;
    if (bits_left_ < 12) write_out();
  }
  low_ = (low_ << count) + range_ * bins;
  bits_left_ -= count;
  if (bits_left_ < 12) write_out();
}

NNR_HOT_INLINE uint32_t BinDecoder::decode_raw(const Context& ctx) {
  const intptr_t state = ctx.state();
  // rLPS by probability distance and the range's bits 5..7: range_ >> 5 is in
  // [8, 15] (bit 8 is set), so no mask is needed.
  const uint64_t lps_range = tables::kEngine.lps_scaled[8 * (state >> 7) + intptr_t(range_ >> 5) + (8 * 32 - 8)];
  const uint64_t mps_range = (uint64_t(range_) << 39) - lps_range;
  const uint32_t mps = state >= 0 ? 1u : 0u;
  uint32_t bin, n;
  // A branch rather than selects: the MPS path, by far the more frequent, then takes its
  // renormalized range from one table (kEngine.mps_range) and shifts the window by at most one
  // bit (mps range >= 128 for any range in [256, 510]); measured faster than the branch-free
  // form on real streams.
  if (window_ >= mps_range) {  // the offset falls into the LPS sub-range
    window_ -= mps_range;
    bin = mps ^ 1;
    n = uint32_t(__builtin_clzll(lps_range)) - 16;  // back to [256, 510]
    range_ = uint32_t((lps_range << n) >> 39);
  } else {
    bin = mps;
    n = uint32_t(mps_range >> 47) ^ 1;
    // The row apart (an empty asm keeps the compiler from folding it into the range's index):
    // range to range is then one load, base + index + displacement.
    const uint16_t* row = tables::kEngine.mps_range + 256 * ((state >> 7) + 32);
    asm("" : "+r"(row));
    range_ = row[intptr_t(range_) - 256];
  }
  window_ <<= n;
  cnt_ -= int32_t(n);
  if (__builtin_expect(cnt_ < 0, 0)) fill(0);  // once per 33 to 40 bits of payload
  return bin;
}

NNR_HOT_INLINE uint32_t BinDecoder::decode(Context& ctx) {
  const uint32_t bin = decode_raw(ctx);
  ctx.update(bin);
  return bin;
}

inline uint32_t BinDecoder::decode_bypass() {
  window_ <<= 1;
  if (__builtin_expect(--cnt_ < 0, 0)) fill(0);
  const uint64_t range = uint64_t(range_) << 39;
  if (window_ >= range) {
    window_ -= range;
    return 1;
  }
  return 0;
}

inline uint32_t BinDecoder::decode_bypass_bins(uint32_t count) {
  if (count == 0) return 0;
  // The reference reads the bytes of these bins one by one and throws at the first that is
  // missing; reading them up front throws in exactly the same cases.
  if (cnt_ < int32_t(count)) fill(int32_t(count));
  cnt_ -= int32_t(count);
  if (range_ == 256) {
    // After an entry point the reference takes the bins as the next bits of the offset and
    // keeps the value to 15 bits (value = (value << n) & 0x7FFF, value bit 15 = window bit 47).
    const uint32_t bins = uint32_t(window_ >> (47 - count)) & uint32_t((uint64_t(1) << count) - 1);
    window_ = (window_ << count) & ((uint64_t(1) << 47) - 1);
    return bins;
  }
  const uint64_t range = uint64_t(range_) << 39;
  uint64_t w = window_;
  uint32_t bins = 0;
  for (uint32_t i = 0; i < count; ++i) {  // bin by bin as decode_bypass, without the refills
    w <<= 1;
    const uint64_t one = uint64_t(0) - uint64_t(w >= range);  // all ones for a 1
    w -= range & one;
    bins = 2 * bins - uint32_t(one);
  }
  window_ = w;
  return bins;
}

}  // namespace nnr
