#pragma once
#include <cstdint>

namespace nnr::tables {
extern const uint8_t kLpsTable[256];
extern const int16_t kUpdateCurve[32];
extern const int16_t kInitSets[9][4];
extern const uint32_t kEstBits[1024][2];

// Derived from the tables above (tables.cpp, at compile time) in the layouts the engine's hot
// paths index directly.
struct EngineTables {
  // rLPS indexed ((range & 0xE0) << 1) + (S0plusS1 >> 7) + 32 (Context::rlps): kLpsTable with
  // the absolute value of the probability distance folded in (|S0plusS1 >> 7| <= 31 for every
  // reachable state).
  uint8_t lps[8 * 64];
  // The decoder's rLPS, scaled like its range (<< 39), indexed 8 * ((S0plusS1 >> 7) + 32) +
  // (range >> 5) - 8: the range's row is its bits 5..7 and bit 8 is always set.
  uint64_t lps_scaled[64 * 8];
  // Context::update of each init set's window shifts as table deltas, with the sign of the
  // update folded in: update[128 * set + 64 * bin + 32 * (0: 16*S0, 1: S1) + j]. One flat array
  // (kUpdateRow per set), so that code may address several sets' rows from one pointer.
  static constexpr int kUpdateRow = 128;
  int16_t update[9 * kUpdateRow];
};
extern const EngineTables kEngine;
}  // namespace nnr::tables
