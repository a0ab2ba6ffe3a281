// Context layout, context selection and binarization of one quantization index, shared by
// the tensor coder (coding, init-set estimation) and the quantizers' rate estimation.
// Internal to the core (not installed).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "nnr/cabac.h"  // NNR_HOT_INLINE

namespace nnr::detail {

// DQ state transition, indexed [state][parity of q].
constexpr int kDqNext[8][2] = {{0, 2}, {7, 5}, {1, 3}, {6, 4}, {2, 0}, {5, 7}, {3, 1}, {4, 6}};

// kDqNext as one 64-bit constant (a shift instead of a load, for the decoder, where the
// transition lies on the path from one level's last bin to the next level's first context).
constexpr uint64_t kDqNextPacked = [] {
  uint64_t k = 0;
  for (int s = 0; s < 8; ++s)
    for (int b = 0; b < 2; ++b) k |= uint64_t(kDqNext[s][b]) << (8 * s + 4 * b);
  return k;
}();
inline uint32_t dq_next(uint32_t state, uint32_t parity) { return uint32_t(kDqNextPacked >> (8 * state + 4 * parity)) & 7u; }

// Context store layout (the indices only matter through the init-signalling order).
struct Layout {
  explicit Layout(uint32_t n) : num_gtx(n) {}
  uint32_t num_gtx;
  static constexpr int kSig = 0;       // 3 * state + neighbour class
  static constexpr int kSigTca = 24;   // 2 * state + (|base| > 1)
  static constexpr int kSigHdsp = 40;  // state
  static constexpr int kSign = 48;     // neighbour class
  static constexpr int kSignTca = 51;  // base > 0
  static constexpr int kGtx = 53;      // 2 * n + (level < 0)
  int gtx_tca() const { return kGtx + 2 * int(num_gtx); }
  int rem() const { return kGtx + 4 * int(num_gtx); }  // 32 prefix contexts
  int shift_flag() const { return rem() + 34; }
  int row_skip() const { return rem() + 36; }
  int size() const { return rem() + 37; }
};

// Which neighbour / base / history information selects the contexts at the current position.
struct Modeler {
  int32_t neighbour = 0;
  int32_t base = 0;
  bool hdsp = false;
  static int cls(int32_t v) { return v == 0 ? 0 : (v < 0 ? 1 : 2); }
  int sig(int state) const {
    if (hdsp) return Layout::kSigHdsp + state;
    if (base != 0) return Layout::kSigTca + 2 * state + (std::abs(base) > 1 ? 1 : 0);
    return Layout::kSig + 3 * state + cls(neighbour);
  }
  int sign() const {
    if (base != 0) return Layout::kSignTca + (base < 0 ? 0 : 1);
    return Layout::kSign + cls(neighbour);
  }
  int gtx(const Layout& L, bool positive, uint32_t n) const {
    if (base != 0) return L.gtx_tca() + int(2 * n) + (uint32_t(std::abs(base)) >= n ? 0 : 1);
    return Layout::kGtx + int(2 * n) + (positive ? 0 : 1);
  }
};

// Codebook limits of the truncated binarization (profile 1 only); -1 = no limit.
struct Codebook {
  int64_t size = 0;
  int64_t zero = 0;
  bool sign_inferred() const { return size > 0 && (zero == 0 || zero == size - 1); }
  int64_t max_abs(bool negative) const { return size > 0 ? (negative ? zero : size - zero - 1) : -1; }
  int64_t max_abs_any() const { return size > 0 ? std::max(zero, size - 1 - zero) : -1; }
};

// Binarization of one quantization index q, shared by the coder and the init-set estimator
// (Sink::bin(bin, ctx) and Sink::bypass(bins, count)).
template <class Sink>
NNR_HOT_INLINE void code_remainder(Sink& s, const Layout& L, uint32_t value, int64_t rem_max) {
  uint32_t base = 0, lg = 0;
  int ctx = L.rem();
  if (value == 0) {
    s.bin(0, ctx);
    return;
  }
  s.bin(1, ctx++);
  base += 1;
  lg++;
  while (value > base + (1u << lg) - 1 && (rem_max == -1 || rem_max >= int64_t(base) + (int64_t(1) << lg))) {
    s.bin(1, ctx++);
    base += 1u << lg;
    lg++;
  }
  if (rem_max == -1 || rem_max >= int64_t(base) + (int64_t(1) << lg)) s.bin(0, ctx);
  s.bypass(value - base, lg);
}

template <class Sink>
NNR_HOT_INLINE void code_level(Sink& s, const Layout& L, const Modeler& m, int32_t value, int state, const Codebook& cb) {
  if (cb.size == 1) return;  // a one-entry codebook: nothing is coded
  const uint32_t sig = value != 0;
  s.bin(sig, m.sig(state));
  if (!sig) return;
  const bool negative = value < 0;
  const int64_t max_abs = cb.max_abs(negative);
  if (!cb.sign_inferred()) s.bin(negative ? 1u : 0u, m.sign());
  if (max_abs == 1) return;
  uint32_t rem = uint32_t(std::abs(int64_t(value)) - 1);
  uint32_t gr = rem ? 1 : 0;
  s.bin(gr, m.gtx(L, value > 0, 0));
  uint32_t n = 1;
  while (gr && n < L.num_gtx && (max_abs == -1 || max_abs > int64_t(n) + 1)) {
    rem--;
    gr = rem ? 1 : 0;
    s.bin(gr, m.gtx(L, value > 0, n));
    n++;
  }
  if (max_abs != -1 && max_abs == int64_t(n) + 1) {
    rem--;
    n++;
    gr = 0;
  }
  if (gr && (max_abs == -1 || max_abs > int64_t(n) + 1)) {
    rem--;
    code_remainder(s, L, rem, max_abs == -1 ? -1 : max_abs - (int64_t(n) + 1));
  }
}

// code_level for the common case: no codebook (max_abs == -1, the sign always coded), no TCA
// and no HDSP, so the significance and sign contexts are given by the caller (from the DQ
// state and the neighbour class) and the greater-than contexts of one sign are every other
// context from kGtx + (value < 0). Emits exactly the bins of code_level, in the same order:
// - |value| - 1 = r: min(r, num_gtx) greater-than ones, a zero if r < num_gtx;
// - otherwise the remainder v = r - num_gtx as in code_remainder: lg = floor(log2(v + 1)) ones
//   on rem() + 0 .. lg - 1, a zero on rem() + lg, then v - (2^lg - 1) in lg bypass bins
//   (code_remainder's loop stops at the first lg with v <= 2^(lg + 1) - 2).
// Contexts are the sink's handles (Sink::at(index)): an index, or a pointer into the context
// store, so that the coder steps from context to context without recomputing addresses.
template <class Sink, class Handle>
NNR_HOT_INLINE void code_level_plain(Sink& s, const Layout& L, int32_t value, Handle sig_ctx, Handle sign_ctx) {
  if (value == 0) {
    s.bin(0, sig_ctx);
    return;
  }
  s.bin(1, sig_ctx);
  const uint32_t negative = value < 0 ? 1u : 0u;
  s.bin(negative, sign_ctx);
  const uint32_t r = (negative ? 0u - uint32_t(value) : uint32_t(value)) - 1;  // |value| - 1, no overflow
  const Handle gtx = s.at(Layout::kGtx + int(negative));
  const uint32_t ones = r < L.num_gtx ? r : L.num_gtx;
  for (uint32_t n = 0; n < ones; ++n) s.bin(1, gtx + 2 * n);
  if (r < L.num_gtx) {
    s.bin(0, gtx + 2 * r);
    return;
  }
  const uint32_t v = r - L.num_gtx;
  const Handle rem = s.at(L.rem());
  const uint32_t lg = uint32_t(63 - __builtin_clzll(uint64_t(v) + 1));
  for (uint32_t i = 0; i < lg; ++i) s.bin(1, rem + i);
  s.bin(0, rem + lg);
  if (lg) s.bypass(v - ((1u << lg) - 1), lg);
}

}  // namespace nnr::detail
