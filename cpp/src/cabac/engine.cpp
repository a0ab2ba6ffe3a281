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

BinDecoder::BinDecoder(const uint8_t* data, size_t size) : data_(data), size_(size) {
  const uint32_t b0 = next_byte();
  const uint32_t b1 = next_byte();
  value_ = (b0 << 8) | b1;
}

uint32_t BinDecoder::decode_bypass() {
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

uint32_t BinDecoder::decode_bypass_bins(uint32_t count) {
  if (range_ == 256) {  // after an entry point: the bins are the next bits of the offset
    uint32_t bins = 0;
    while (count > 0) {
      const uint32_t n = count < 8 ? count : 8;
      bins = (bins << n) | ((value_ >> (15 - n)) & ((1u << n) - 1));
      value_ = (value_ << n) & 0x7FFF;
      count -= n;
      bits_needed_ += static_cast<int32_t>(n);
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

uint32_t BinDecoder::decode_terminate() {
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
  d.pos_ = size_t(bytes);
  d.bits_needed_ = needed;
  d.range_ = 256;
  d.value_ = (offset9 << 7) + ((uint32_t(data_[bytes - 1]) << (8 + needed)) & 127);
  return d;
}

bool BinDecoder::stop_pattern_ok() const {
  if (pos_ == 0) return false;
  const uint32_t last = data_[pos_ - 1];
  return ((last << (8 + bits_needed_)) & 0xFF) == 0x80;
}

}  // namespace nnr
