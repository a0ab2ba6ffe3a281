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

void BinEncoder::encode_bypass_bins(uint32_t bins, uint32_t count) {
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

void BinEncoder::write_out() {
  const uint32_t lead = low_ >> (24 - bits_left_);
  bits_left_ += 8;
  low_ &= 0xFFFFFFFFu >> bits_left_;
  if (lead == 0xFF) {
    num_buffered_++;
    return;
  }
  if (num_buffered_ > 0) {
    const uint32_t carry = lead >> 8;
    out_.push_back(static_cast<uint8_t>(buffered_byte_ + carry));
    buffered_byte_ = static_cast<uint8_t>(lead & 0xFF);
    const uint8_t fill = static_cast<uint8_t>((0xFF + carry) & 0xFF);
    for (; num_buffered_ > 1; --num_buffered_) out_.push_back(fill);
  } else {
    num_buffered_ = 1;
    buffered_byte_ = static_cast<uint8_t>(lead);
  }
}

void BinEncoder::finish() {
  if (low_ >> (32 - bits_left_)) {
    out_.push_back(static_cast<uint8_t>(buffered_byte_ + 1));
    for (; num_buffered_ > 1; --num_buffered_) out_.push_back(0x00);
    low_ -= 1u << (32 - bits_left_);
  } else {
    if (num_buffered_ > 0) out_.push_back(buffered_byte_);
    for (; num_buffered_ > 1; --num_buffered_) out_.push_back(0xFF);
  }
  // Stop bit, then left-align and write the remaining bytes.
  low_ >>= 8;
  low_ <<= 1;
  low_++;
  bits_left_--;
  low_ <<= (32 - (24 - bits_left_));
  for (uint32_t i = 0; i < 24 - bits_left_; i += 8) out_.push_back(static_cast<uint8_t>((low_ >> (24 - i)) & 0xFF));
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
