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
  // rLPS indexed 8 * ((S0plusS1 >> 7) + 32) + (range >> 5) - 8 (Context::rlps, range in
  // [256, 510]): kLpsTable with the absolute value of the probability distance folded in
  // (|S0plusS1 >> 7| <= 31 for every reachable state); a state's 8 entries are adjacent, so
  // the range's part of the index is one shift.
  uint8_t lps[64 * 8];
  // The range after decoding an MPS, renormalized: (range - rLPS) << (range - rLPS < 256),
  // indexed 256 * ((S0plusS1 >> 7) + 32) + range - 256 for range in [256, 511]. The decoder's
  // chain from range to range on its most frequent path is then one load (instead of the
  // rLPS load, a subtraction and a shift).
  uint16_t mps_range[64 * 256];
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

// Context::update as state transitions and Context::cost, for the init-set estimator's
// replay, one row per bin value (so that one pointer, to the bin's row, reaches all three):
// after bin b, the next S0 of set s at S0 = a is row[b].s0_next[s][a + 128] and the next S1 of
// window shift 4 + w at S1 = y is row[b].s1_next[w][y + 2048]; the cost of b at S0plusS1 >> 3 =
// i is row[b].cost[512 + i] (kEstBits). Every reachable state has |S0| <= 123 and |S1| <= 1923
// (see Context); the tables cover |S0| <= 127 and |S1| <= 2047 and clamp into that domain
// (which no reachable state leaves), so that indexing by a table's own output is safe.
struct ReplayTables {
  static constexpr int kS0Row = 256, kS1Row = 4096;
  static constexpr int kS1Window[9] = {0, 0, 0, 1, 2, 2, 2, 1, 1};  // set -> w (tables.cpp checks)
  struct Row {
    int16_t s0_next[9][kS0Row];
    int16_t s1_next[3][kS1Row];
    uint32_t cost[1024];
  };
  Row row[2];
};
extern const ReplayTables kReplay;
}  // namespace nnr::tables
