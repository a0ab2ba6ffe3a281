// Arithmetic engine of DeepCABAC (the HEVC/VVC design with a 9-bit range).
#include "nnr/cabac.h"

namespace nnr {

// ---------------------------------------------------------------- encoder

void BinEncoder::encode_bypass(uint32_t bin) {
  low_ <<= 1;
  if (bin) low_ += range_;
  bits_left_--;
  if (bits_left_ < 12) write_out();
}

void BinEncoder::emit(std::vector<uint8_t>* out, uint8_t byte, uint32_t fills, uint8_t fill) {
  out->push_back(byte);
  out->insert(out->end(), fills, fill);
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
    out_->push_back(static_cast<uint8_t>(buffered_byte_ + 1));
    for (; num_buffered_ > 1; --num_buffered_) out_->push_back(0x00);
    low_ -= 1u << (32 - bits_left_);
  } else {
    if (num_buffered_ > 0) out_->push_back(buffered_byte_);
    for (; num_buffered_ > 1; --num_buffered_) out_->push_back(0xFF);
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
// states held in registers (the same tables and index arithmetic as Context; every reachable
// state stays inside them, see Context). Three sets per pass share the per-bin work (loading
// the bin, the row offsets of the bin) and still fit the registers; the sets are template
// arguments so that their table rows are constant addresses.
template <int A, int B, int C>
void replay3(const uint8_t* bins, size_t n, int16_t* x16, int16_t* y16, uint64_t* bits) {
  intptr_t xa = x16[A], ya = y16[A], xb = x16[B], yb = y16[B], xc = x16[C], yc = y16[C];
  uint64_t sa = 0, sb = 0, sc = 0;
  constexpr intptr_t kRow = tables::EngineTables::kUpdateRow;
  const int16_t* const update = tables::kEngine.update;
  const uint32_t* const est = &tables::kEstBits[512][0];
  for (size_t j = 0; j < n; ++j) {
    const uint32_t bin = bins[j];
    const intptr_t bias = intptr_t(bin) - 1;
    // The bin's half of the update rows (kEngine.update is flat: set i's row starts
    // kUpdateRow * i further on, a constant offset folded into the addressing), and the bin's
    // cost column at S0plusS1 >> 3 == 0.
    const int16_t* const t = update + 64 * intptr_t(bin) + 16;
    const uint32_t* const cost = est + bin;
    sa += cost[2 * ((xa + ya) >> 3)];
    sb += cost[2 * ((xb + yb) >> 3)];
    sc += cost[2 * ((xc + yc) >> 3)];
    xa += t[kRow * A + ((xa + bias) >> 7)];
    ya += t[kRow * A + 32 + ((ya + bias) >> 7)];
    xb += t[kRow * B + ((xb + bias) >> 7)];
    yb += t[kRow * B + 32 + ((yb + bias) >> 7)];
    xc += t[kRow * C + ((xc + bias) >> 7)];
    yc += t[kRow * C + 32 + ((yc + bias) >> 7)];
  }
  x16[A] = int16_t(xa), y16[A] = int16_t(ya), bits[A] += sa;
  x16[B] = int16_t(xb), y16[B] = int16_t(yb), bits[B] += sb;
  x16[C] = int16_t(xc), y16[C] = int16_t(yc), bits[C] += sc;
}
}  // namespace

void InitSetEstimator::flush() {
  for (size_t c = 0; c < bins_.size(); ++c) {
    std::vector<uint8_t>& b = bins_[c];
    if (b.empty()) continue;
    Track& t = tracks_[c];
    replay3<0, 1, 2>(b.data(), b.size(), t.x, t.y, t.bits);
    replay3<3, 4, 5>(b.data(), b.size(), t.x, t.y, t.bits);
    replay3<6, 7, 8>(b.data(), b.size(), t.x, t.y, t.bits);
    b.clear();
  }
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
  const uint64_t range = range_ - (uint64_t(2) << 39);
  // A 1 ends the payload. The reference leaves range - 2 behind, which nothing observes (the
  // position and the stop pattern do not depend on it); keeping the range in [256, 510] keeps
  // any further (meaningless) decoding free of undefined shifts.
  if (window_ >= range) return 1;
  range_ = range;
  if (range_ < uint64_t(256) << 39) {
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
  d.range_ = uint64_t(256) << 39;
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
