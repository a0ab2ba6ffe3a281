// Arithmetic engine of DeepCABAC (the HEVC/VVC design with a 9-bit range).
#include "nnr/cabac.h"

#include <algorithm>
#include <new>

namespace nnr {

// ---------------------------------------------------------------- encoder

void BinEncoder::encode_bypass(uint32_t bin) {
  low_ <<= 1;
  if (bin) low_ += range_;
  bits_left_--;
  if (bits_left_ < 12) write_out();
}

void BinEncoder::carry(std::vector<uint8_t>* out) {
  for (size_t i = out->size(); i-- > 0;)
    if (++(*out)[i] != 0) return;
}

void BinEncoder::put(std::vector<uint8_t>* out, uint32_t lead) {
  if (lead > 0xFF) carry(out);
  out->push_back(static_cast<uint8_t>(lead));
}

void BinEncoder::encode_terminate(uint32_t bin) {
  range_ -= 2;
  if (bin) {
    low_ += range_;
    low_ <<= 7;
    range_ = 2 << 7;
    bits_left_ -= 7;
  } else if (range_ >= 256) {
    return;
  } else {
    low_ <<= 1;
    range_ <<= 1;
    bits_left_--;
  }
  if (bits_left_ < 12) write_out();
}

void BinEncoder::finish() {
  if (low_ >> (32 - bits_left_)) {
    carry(out_);
    low_ -= 1u << (32 - bits_left_);
  }
  // Stop bit, then left-align and write the remaining bytes.
  low_ >>= 8;
  low_ <<= 1;
  low_++;
  bits_left_--;
  low_ <<= (32 - (24 - bits_left_));
  for (uint32_t i = 0; i < 24 - bits_left_; i += 8) out_->push_back(static_cast<uint8_t>((low_ >> (24 - i)) & 0xFF));
}

// ---------------------------------------------------------------- init-set estimation

namespace {
// Three init sets' tracks of one context over `n` bins: Context::cost and Context::update on
// states held in registers, the update as a table transition per state (tables::kReplay: the
// next S0 = a and S1 = y, one load each) and the cost at S0plusS1 >> 3 = 2a + (y >> 3). Three
// sets per pass share the per-bin work (loading the bin, the bin's table row) and still fit the
// registers; the sets are template arguments, so that every lookup is one load at a constant
// offset from the bin's row.
template <int A, int B, int C>
void replay3(const uint8_t* bins, size_t n, int16_t* x16, int16_t* y16, uint64_t* bits) {
  using Row = tables::ReplayTables::Row;
  constexpr int kWA = tables::ReplayTables::kS1Window[A], kWB = tables::ReplayTables::kS1Window[B],
                kWC = tables::ReplayTables::kS1Window[C];
  intptr_t aa = x16[A] / 16, ya = y16[A], ab = x16[B] / 16, yb = y16[B], ac = x16[C] / 16, yc = y16[C];
  uint64_t sa = 0, sb = 0, sc = 0;
  const Row* const rows = tables::kReplay.row;
  for (size_t j = 0; j < n; ++j) {
    const Row& r = rows[bins[j]];
    sa += r.cost[512 + 2 * aa + (ya >> 3)];
    sb += r.cost[512 + 2 * ab + (yb >> 3)];
    sc += r.cost[512 + 2 * ac + (yc >> 3)];
    aa = r.s0_next[A][128 + aa];
    ab = r.s0_next[B][128 + ab];
    ac = r.s0_next[C][128 + ac];
    ya = r.s1_next[kWA][2048 + ya];
    yb = r.s1_next[kWB][2048 + yb];
    yc = r.s1_next[kWC][2048 + yc];
  }
  x16[A] = int16_t(16 * aa), y16[A] = int16_t(ya), bits[A] += sa;
  x16[B] = int16_t(16 * ab), y16[B] = int16_t(yb), bits[B] += sb;
  x16[C] = int16_t(16 * ac), y16[C] = int16_t(yc), bits[C] += sc;
}
}  // namespace

InitSetEstimator::InitSetEstimator(size_t num_contexts) : tracks_(num_contexts), next_(num_contexts) {
  for (Track& t : tracks_) t.init();
  // Only the pages a context's bins reach are ever touched.
  // (aligned operator new: C++17 everywhere, unlike std::aligned_alloc, which MSVC lacks)
  chunks_.reset(static_cast<uint8_t*>(::operator new(std::max<size_t>(1, num_contexts) * kChunk, std::align_val_t(kChunk))));
  for (size_t c = 0; c < num_contexts; ++c) next_[c] = chunks_.get() + c * kChunk;
}

void InitSetEstimator::replay(size_t c) {
  uint8_t* const start = chunks_.get() + c * kChunk;
  const size_t n = size_t(next_[c] - start);
  if (n == 0) return;
  Track& t = tracks_[c];
  replay3<0, 1, 2>(start, n, t.x, t.y, t.bits);
  replay3<3, 4, 5>(start, n, t.x, t.y, t.bits);
  replay3<6, 7, 8>(start, n, t.x, t.y, t.bits);
  next_[c] = start;
}

void InitSetEstimator::flush() {
  for (size_t c = 0; c < next_.size(); ++c) replay(c);
}

int InitSetEstimator::best(int ctx) const {
  const Track& t = tracks_[size_t(ctx)];
  int best = 0;
  uint64_t min_bits = t.bits[0];
  for (int i = 1; i < 9; ++i) {
    const uint64_t b = t.bits[i] + 3u * 32768u;
    if (b < min_bits) { best = i; min_bits = b; }
  }
  return best;
}

// ---------------------------------------------------------------- decoder

void BinDecoder::truncated(size_t size) {
  throw Error(ErrorKind::Truncated, "CABAC payload ends early", static_cast<std::ptrdiff_t>(size));
}

// The reference reads two bytes here (throwing on a buffer shorter than that); the window
// takes what it can hold and must get the 9 bits of the first offset.
BinDecoder::BinDecoder(const uint8_t* data, size_t size) : data_(data), size_(size) { fill(0); }

uint32_t BinDecoder::decode_terminate() {
  const uint32_t range = range_ - 2;
  // A 1 ends the payload. The reference leaves range - 2 behind, which nothing observes (the
  // position and the stop pattern do not depend on it); keeping the range in [256, 510] keeps
  // any further (meaningless) decoding free of undefined shifts.
  if (window_ >= uint64_t(range) << 39) return 1;
  range_ = range;
  if (range_ < 256) {
    range_ += range_;
    window_ <<= 1;
    if (--cnt_ < 0) fill(0);
  }
  return 0;
}

BinDecoder BinDecoder::at_entry_point(uint64_t bit_position, uint32_t offset9) const {
  BinDecoder d(*this);
  const uint64_t bits = bit_position + 9;
  const uint64_t bit_off = bits & 7;
  uint64_t bytes = bits >> 3;
  int32_t needed = int32_t(bit_off) - 9;
  if (bit_off != 0)
    bytes++;
  else
    needed += 8;
  if (bytes < 1 || bytes > size_ || offset9 > 255)
    throw Error(ErrorKind::NonConforming, "entry point outside the payload", std::ptrdiff_t(bytes));
  // The reference's state: bytes read, the offset and the 7 - (needed + 8) bits of the last byte
  // read that follow it; the window reads on from there.
  const uint32_t value = (offset9 << 7) + ((uint32_t(data_[bytes - 1]) << (8 + needed)) & 127);
  d.pos_ = size_t(bytes);
  d.cnt_ = -1 - needed;
  d.range_ = 256;
  d.window_ = uint64_t(value) << 32;
  return d;
}

bool BinDecoder::stop_pattern_ok() const {
  // The reference's byte count and bits_needed (in [-8, -1]) at this bit position.
  const uint64_t p = bit_position();
  const size_t pos = bytes_read();
  const int32_t bits_needed = int32_t(int64_t(p) - 8 * int64_t(pos) + 8);
  const uint32_t last = data_[pos - 1];
  return ((last << (8 + bits_needed)) & 0xFF) == 0x80;
}

}  // namespace nnr
