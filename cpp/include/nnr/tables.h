#pragma once
#include <cstdint>

namespace nnr::tables {
extern const uint8_t kLpsTable[256];
extern const int16_t kUpdateCurve[32];
extern const int16_t kInitSets[9][4];
extern const uint32_t kEstBits[1024][2];
}  // namespace nnr::tables
