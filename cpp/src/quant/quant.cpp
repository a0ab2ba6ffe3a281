#include "nnr/quant.h"

#include "../cabac/binarization.h"
#include "nnr/cabac.h"

#include <array>
// The dependent-quantization trellis in SSE2 (x86-64's baseline) unless NNR_NO_SIMD (or not
// x86): the scalar form, which gave the same levels on every tensor it was compared on when the
// SSE2 form was written; the tests pin the SSE2 form's output.
#if defined(__SSE2__) && !defined(NNR_NO_SIMD)
#define NNR_TRELLIS_SSE2 1
#include <emmintrin.h>
#endif
#include <cmath>
#include <limits>
#include <vector>

namespace nnr {

double step_size_double(int32_t qp, int32_t qp_density) {
  const int32_t k = 1 << qp_density;
  const int32_t mul = k + (qp & (k - 1));
  const int32_t shift = qp >> qp_density;
  return mul * std::pow(2.0, shift - qp_density);
}

float step_size(int32_t qp, int32_t qp_density) { return float(step_size_double(qp, qp_density)); }

bool quantize_uniform(const float* w, int32_t* k, uint64_t n, float step) {
  const float scale = 1.0f / step;
  for (uint64_t i = 0; i < n; ++i) {
    const float prod = scale * w[i];
    const double r = std::round(prod);
    if (!(r <= 2147483647.0 && r >= -2147483648.0)) return false;
    k[i] = int32_t(r);
  }
  return true;
}

void dequantize(const int32_t* k, float* w, uint64_t n, float step) {
  for (uint64_t i = 0; i < n; ++i) {
    w[i] = step * float(k[i]);  // one float32 rounding (built with -ffp-contract=off)
  }
}

namespace {

constexpr int kNext[8][2] = {{0, 2}, {7, 5}, {1, 3}, {6, 4}, {2, 0}, {5, 7}, {3, 1}, {4, 6}};

struct Candidate {
  double dist;
  int32_t q;
};

struct Branch {
  int prev;
  int slot;  // 0..3: candidate k with k & 3 == slot; 4: zero
};

// Per state: the previous state (bits 0-2) and the candidate slot (bits 3-5); the level is
// recomputed from the weight when tracing back, so a decision takes one byte.
using Decision = uint8_t;

// Incoming branches per state, in the order NNCodec's trellis tries them (ties keep the first).
std::array<std::vector<Branch>, 8> make_connections() {
  std::array<std::vector<Branch>, 8> conn;
  for (int prev = 0; prev < 8; ++prev) {
    const int quant = prev & 1;
    conn[kNext[prev][0]].push_back({prev, 3 * quant});
    conn[kNext[prev][0]].push_back({prev, 4});
    conn[kNext[prev][1]].push_back({prev, 2 - quant});
  }
  return conn;
}

// Visits positions in the scan order of `shape` (block rows, blocks, rows inside blocks).
template <class F>
void scan_positions(const TensorParams& shape, F&& f) {
  const int scan = shape.effective_scan();
  const uint32_t bw = scan ? (4u << scan) : shape.cols;
  const uint32_t bh = scan ? (4u << scan) : shape.rows;
  for (uint32_t y0 = 0; y0 < shape.rows; y0 += bh)
    for (uint32_t x0 = 0; x0 < shape.cols; x0 += bw)
      for (uint32_t y = y0; y < std::min(shape.rows, y0 + bh); ++y)
        for (uint32_t x = x0; x < std::min(shape.cols, x0 + bw); ++x) f(uint64_t(y) * shape.cols + x);
}

}  // namespace

// The trellis candidates of one weight: slot k & 3 holds the multiplier k among the four
// around |w|/step (from max(1, trunc - 1)), slot 4 holds zero; q = sign * ((k + 1) >> 1).
inline void trellis_candidates(double qscale, float wv, double* dist, int32_t* qv) {
  const int32_t sign = wv < 0 ? -1 : 1;
  const double org = qscale * double(wv) * double(sign);
  dist[4] = org * org;
  qv[4] = 0;
  const int32_t lo = std::max<int32_t>(1, int32_t(org) - 1);
  for (int32_t qi = lo; qi < lo + 4; ++qi) {
    const double d = org - double(qi);
    dist[qi & 3] = d * d;
    qv[qi & 3] = sign * ((qi + 1) >> 1);
  }
}

// The three incoming branches of each state in the order NNCodec's trellis tries them (by
// previous state), so that ties resolve identically.
struct StateBranches {
  Branch b[3];
};

// The branch table as compile-time constants, so that the trellis loop below unrolls over the
// 8 states with fixed cost / distance indices and the decisions as immediate values.
constexpr std::array<StateBranches, 8> kBranches = [] {
  std::array<StateBranches, 8> out{};
  int count[8] = {};
  for (int prev = 0; prev < 8; ++prev) {  // make_connections(), in the same order
    const int quant = prev & 1;
    const int a = kNext[prev][0], b = kNext[prev][1];
    out[a].b[count[a]++] = Branch{prev, 3 * quant};
    out[a].b[count[a]++] = Branch{prev, 4};
    out[b].b[count[b]++] = Branch{prev, 2 - quant};
  }
  return out;
}();

// Decision byte of branch i into state s: the previous state and the candidate slot.
constexpr uint64_t decision_of(int s, int i) {
  return uint64_t(kBranches[s].b[i].prev | (kBranches[s].b[i].slot << 3));
}

// One trellis step: the cheapest of the three incoming branches of each state, ties keeping the
// first (strict <, the same sums cost + dist in the same order as NNCodec, so that rounding and
// NaN behave identically). Returns the 8 decision bytes packed into one word (byte s: state s).
template <int S>
inline uint64_t trellis_state(const double* cost, const double* dist, double* next) {
  constexpr Branch b0 = kBranches[S].b[0], b1 = kBranches[S].b[1], b2 = kBranches[S].b[2];
  double best = cost[b0.prev] + dist[b0.slot];
  uint64_t pick = decision_of(S, 0);
  const double c1 = cost[b1.prev] + dist[b1.slot];
  if (c1 < best) { best = c1; pick = decision_of(S, 1); }
  const double c2 = cost[b2.prev] + dist[b2.slot];
  if (c2 < best) { best = c2; pick = decision_of(S, 2); }
  next[S] = best;
  return pick << (8 * S);
}

#if NNR_TRELLIS_SSE2
// trellis_state for all 8 states at once, in SSE2 (x86-64's baseline): lanes add and compare
// exactly as the scalar code (IEEE, no contraction, strict < keeping the first of equals) and
// select by mask instead of branching: the comparisons are close to random on real weights,
// and the branches of the scalar form were mispredicted about as often.
//
// The incoming branches of states (2p, 2p+1) always come from one of four pairs of previous
// states, (0, 2), (4, 6), (3, 1), (7, 5), with the same candidate slot in both lanes:
//   states 0,1: (0,2)+d0  (0,2)+d4  (4,6)+d2      states 4,5: (3,1)+d1  (7,5)+d3  (7,5)+d4
//   states 2,3: (0,2)+d2  (4,6)+d0  (4,6)+d4      states 6,7: (3,1)+d3  (3,1)+d4  (7,5)+d1
// (checked against kBranches below). A step keeps the four pairs' comparison bits (16 bits per
// position); the traceback turns them into decision bytes with per-pair tables.
struct PairTables {
  uint16_t t[4][16];  // [pair][m1 | m2 << 2]: decision bytes of states 2p (low) and 2p+1 (high)
};
constexpr PairTables make_pair_tables() {
  PairTables out{};
  for (int p = 0; p < 4; ++p)
    for (int key = 0; key < 16; ++key) {
      uint16_t v = 0;
      for (int lane = 0; lane < 2; ++lane) {
        const int m1 = (key >> lane) & 1, m2 = (key >> (2 + lane)) & 1;
        const int pick = m2 ? 2 : (m1 ? 1 : 0);
        v = uint16_t(v | (decision_of(2 * p + lane, pick) << (8 * lane)));
      }
      out.t[p][key] = v;
    }
  return out;
}
constexpr PairTables kPairTables = make_pair_tables();

constexpr bool pair_layout_ok() {
  // prev pairs per state pair and branch: 0 = (0,2), 1 = (4,6), 2 = (3,1), 3 = (7,5)
  constexpr int kPrevA[4] = {0, 4, 3, 7}, kPrevB[4] = {2, 6, 1, 5};
  constexpr int kPair[4][3] = {{0, 0, 1}, {0, 1, 1}, {2, 3, 3}, {2, 2, 3}};
  constexpr int kSlot[4][3] = {{0, 4, 2}, {2, 0, 4}, {1, 3, 4}, {3, 4, 1}};
  for (int p = 0; p < 4; ++p)
    for (int i = 0; i < 3; ++i) {
      const Branch a = kBranches[2 * p].b[i], b = kBranches[2 * p + 1].b[i];
      if (a.prev != kPrevA[kPair[p][i]] || b.prev != kPrevB[kPair[p][i]]) return false;
      if (a.slot != kSlot[p][i] || b.slot != kSlot[p][i]) return false;
    }
  return true;
}
static_assert(pair_layout_ok(), "trellis branch layout");

// The cheapest of three candidate sums per lane (ties keep the first); returns the comparison
// bits m1 | m2 << 2 of the pair, which (with the pair) determine its states' decisions.
inline __m128d best_of3(__m128d c0, __m128d c1, __m128d c2, uint32_t& key) {
  const __m128d m1 = _mm_cmplt_pd(c1, c0);
  const __m128d b = _mm_or_pd(_mm_and_pd(m1, c1), _mm_andnot_pd(m1, c0));
  const __m128d m2 = _mm_cmplt_pd(c2, b);
  key = uint32_t(_mm_movemask_pd(m1)) | uint32_t(_mm_movemask_pd(m2)) << 2;
  return _mm_or_pd(_mm_and_pd(m2, c2), _mm_andnot_pd(m2, b));
}

// Offsets of the candidate in each slot from lo: slot s holds lo + ((s - lo) & 3), by lo & 3.
alignas(16) constexpr double kSlotOffset[4][4] = {{0, 1, 2, 3}, {3, 0, 1, 2}, {2, 3, 0, 1}, {1, 2, 3, 0}};

// cost: states (0,1), (2,3), (4,5), (6,7); org = |w| / step, lo its lowest candidate. The slot
// distances are trellis_candidates' (org - double(lo + j))^2: lo + j is exact in double.
inline uint16_t trellis_step(__m128d* cost, double org, int32_t lo) {
  const __m128d o = _mm_set1_pd(org);
  const __m128d base = _mm_set1_pd(double(lo));
  const double* off = kSlotOffset[lo & 3];
  const __m128d e01 = _mm_sub_pd(o, _mm_add_pd(base, _mm_load_pd(off)));
  const __m128d e23 = _mm_sub_pd(o, _mm_add_pd(base, _mm_load_pd(off + 2)));
  const __m128d s01 = _mm_mul_pd(e01, e01), s23 = _mm_mul_pd(e23, e23);
  const __m128d d0 = _mm_unpacklo_pd(s01, s01), d1 = _mm_unpackhi_pd(s01, s01);
  const __m128d d2 = _mm_unpacklo_pd(s23, s23), d3 = _mm_unpackhi_pd(s23, s23);
  const __m128d d4 = _mm_mul_pd(o, o);
  const __m128d p02 = _mm_unpacklo_pd(cost[0], cost[1]);
  const __m128d p46 = _mm_unpacklo_pd(cost[2], cost[3]);
  const __m128d p31 = _mm_shuffle_pd(cost[1], cost[0], 3);
  const __m128d p75 = _mm_shuffle_pd(cost[3], cost[2], 3);
  uint32_t k0, k1, k2, k3;
  cost[0] = best_of3(_mm_add_pd(p02, d0), _mm_add_pd(p02, d4), _mm_add_pd(p46, d2), k0);
  cost[1] = best_of3(_mm_add_pd(p02, d2), _mm_add_pd(p46, d0), _mm_add_pd(p46, d4), k1);
  cost[2] = best_of3(_mm_add_pd(p31, d1), _mm_add_pd(p75, d3), _mm_add_pd(p75, d4), k2);
  cost[3] = best_of3(_mm_add_pd(p31, d3), _mm_add_pd(p31, d4), _mm_add_pd(p75, d1), k3);
  return uint16_t(k0 | k1 << 4 | k2 << 8 | k3 << 12);
}
#endif

bool quantize_dependent(const float* w, int32_t* k, const TensorParams& shape, float step) {
  static_assert(kBranches[0].b[0].prev == 0 && kBranches[0].b[2].prev == 4, "branch order");
  const uint64_t n = shape.size();
  // Positions in scan order; the raster scan (the common case) needs no table.
  std::vector<uint64_t> order;
  if (shape.effective_scan()) {
    order.reserve(n);
    scan_positions(shape, [&](uint64_t pos) { order.push_back(pos); });
  }
  const uint64_t* ord = order.empty() ? nullptr : order.data();

  const float fscale = 1.0f / step;
  const double qscale = 1.0 / double(step);
  // Per position: the decisions of the 8 states, and the lowest candidate multiplier `lo` with
  // the weight's sign, from which the traceback recovers the level of a slot without
  // recomputing the candidates. The latter is kept in k itself (overwritten by the traceback at
  // the same position), so the trellis needs 2 bytes per weight beyond its output.
#if NNR_TRELLIS_SSE2
  std::vector<uint16_t> dec(n);  // comparison bits, see trellis_step
  const auto decision = [&](uint64_t i, int s) {
    return uint32_t(kPairTables.t[s >> 1][(dec[i] >> (4 * (s >> 1))) & 15] >> (8 * (s & 1))) & 0xFF;
  };
  const double far = 0.5 * std::numeric_limits<double>::max();
  __m128d cost[4] = {_mm_set_pd(far, 0.0), _mm_set1_pd(far), _mm_set1_pd(far), _mm_set1_pd(far)};
#else
  std::vector<uint64_t> dec(n);
  const auto decision = [&](uint64_t i, int s) { return uint32_t(dec[i] >> (8 * s)) & 0xFF; };
  double cost[8], next[8];
  for (double& c : cost) c = 0.5 * std::numeric_limits<double>::max();
  cost[0] = 0.0;
#endif
  for (uint64_t i = 0; i < n; ++i) {
    const float wv = w[ord ? ord[i] : i];
    // Overflow check: std::round(wv * fscale) (a float) > 2^31 - 3 or < -(2^31 - 2). Rounding
    // is monotone and half away from zero, so for the float product p these are exactly
    // p >= 2^31 - 2.5 and p <= -(2^31 - 1.5) (both false for NaN, as before); no libm call.
    const float p = wv * fscale;
    if (double(p) >= double((1u << 31) - 3) + 0.5 || double(p) <= -(double((1u << 31) - 2) + 0.5)) return false;
    // trellis_candidates without the levels (only the traceback needs them): multiplying by
    // the sign (+-1) is exact, so qscale * |wv| is the same double as its qscale * wv * sign.
    // Branch-free: the sign of a weight is a coin flip for the branch predictor.
    const int32_t sign = 1 - 2 * int32_t(wv < 0.0f);
    const double org = qscale * std::fabs(double(wv));
    const int32_t lo = std::max<int32_t>(1, int32_t(org) - 1);
    k[ord ? ord[i] : i] = sign * lo;
#if NNR_TRELLIS_SSE2
    dec[i] = trellis_step(cost, org, lo);
#else
    double dist[5];
    dist[4] = org * org;
    for (int32_t j = 0; j < 4; ++j) {
      const double d = org - double(lo + j);
      dist[(lo + j) & 3] = d * d;
    }
    dec[i] = trellis_state<0>(cost, dist, next) | trellis_state<1>(cost, dist, next) |
             trellis_state<2>(cost, dist, next) | trellis_state<3>(cost, dist, next) |
             trellis_state<4>(cost, dist, next) | trellis_state<5>(cost, dist, next) |
             trellis_state<6>(cost, dist, next) | trellis_state<7>(cost, dist, next);
    std::copy(next, next + 8, cost);
#endif
  }
#if NNR_TRELLIS_SSE2
  double final_cost[8];
  for (int p = 0; p < 4; ++p) _mm_storeu_pd(final_cost + 2 * p, cost[p]);
#else
  const double* final_cost = cost;
#endif
  int s = 0;
  for (int i = 1; i < 8; ++i)
    if (final_cost[i] < final_cost[s]) s = i;
  for (uint64_t i = n; i-- > 0;) {
    const uint64_t pos = ord ? ord[i] : i;
    const uint32_t d = decision(i, s);
    const uint32_t slot = d >> 3;
    s = int(d & 7);
    int32_t v = 0;
    if (slot != 4) {
      // The candidate qi in [lo, lo + 3] with qi & 3 == slot, q = sign * ((qi + 1) >> 1) (never
      // 0, as lo >= 1), and the multiplier k = 2q - sign * (s & 1) of the previous state s.
      const int32_t sl = k[pos];  // sign * lo, from the forward pass
      const int32_t lo = sl < 0 ? -sl : sl;
      const int32_t qi = lo + int32_t((slot - uint32_t(lo)) & 3);
      const int32_t q = (qi + 1) >> 1;
      v = 2 * q - (s & 1);
      if (sl < 0) v = -v;
    }
    k[pos] = v;
  }
  return true;
}

namespace {

using detail::Codebook;
using detail::Layout;
using detail::Modeler;

// CABAC rate model of one coding path: the adaptive contexts and the neighbour level.
struct RateModel {
  std::vector<Context> ctx;
  int32_t neighbour = 0;
};

struct CostSink {
  const std::vector<Context>& ctx;
  uint64_t bits = 0;  // 1/32768 bit
  void bin(uint32_t b, int c) { bits += ctx[c].cost(b); }
  void bypass(uint32_t, uint32_t count) { bits += uint64_t(count) << 15; }
};

struct UpdateSink {
  std::vector<Context>& ctx;
  void bin(uint32_t b, int c) { ctx[c].update(b); }
  void bypass(uint32_t, uint32_t) {}
};

class RateEstimator {
 public:
  explicit RateEstimator(uint32_t num_gtx) : L_(num_gtx) {}
  void init(RateModel& m) const {
    m.ctx.assign(L_.size(), Context());
    for (auto& c : m.ctx) c.init(0);
    m.neighbour = 0;
  }
  void reset(RateModel& m) const {  // entry point: contexts back to their init, neighbour 0
    for (auto& c : m.ctx) c.reset();
    m.neighbour = 0;
  }
  double bits(const RateModel& m, int32_t q, int state) const {
    Modeler mod;
    mod.neighbour = m.neighbour;
    CostSink sink{m.ctx};
    detail::code_level(sink, L_, mod, q, state, none_);
    return double(sink.bits) / 32768.0;
  }
  void update(RateModel& m, int32_t q, int state) const {
    Modeler mod;
    mod.neighbour = m.neighbour;
    UpdateSink sink{m.ctx};
    detail::code_level(sink, L_, mod, q, state, none_);
    m.neighbour = q;
  }

 private:
  Layout L_;
  Codebook none_;
};

constexpr double kLn2Over6 = 0.69314718055994530942 / 6.0;

// Scan positions and the indices after which a block row ends (entry-point resets).
std::vector<uint64_t> scan_order_of(const TensorParams& shape, std::vector<uint8_t>& row_end) {
  std::vector<uint64_t> order;
  order.reserve(shape.size());
  scan_positions(shape, [&](uint64_t pos) { order.push_back(pos); });
  row_end.assign(order.size(), 0);
  const int scan = shape.effective_scan();
  if (scan) {
    const uint64_t per_row = uint64_t(shape.cols) * (4u << scan);
    for (uint64_t i = per_row; i < order.size(); i += per_row) row_end[i - 1] = 1;
  }
  return order;
}

}  // namespace

bool quantize_uniform_rd(const float* w, int32_t* k, const TensorParams& shape, float step, double lambda_scale) {
  if (lambda_scale <= 0) return quantize_uniform(w, k, shape.size(), step);
  const double lambda = lambda_scale * kLn2Over6;
  const double qscale = 1.0 / double(step);
  const RateEstimator est(shape.num_gtx);
  RateModel model;
  est.init(model);
  std::vector<uint8_t> row_end;
  const std::vector<uint64_t> order = scan_order_of(shape, row_end);
  for (uint64_t i = 0; i < order.size(); ++i) {
    const float wv = w[order[i]];
    const double r = std::round(double(wv) * qscale);
    if (!(r <= 2147483647.0 && r >= -2147483648.0)) return false;
    const int32_t sign = wv < 0 ? -1 : 1;
    const double a = double(sign) * double(wv) * qscale;
    int32_t best = 0;
    double best_cost = a * a + lambda * est.bits(model, 0, 0);
    const int32_t hi = int32_t(std::round(a));
    for (int32_t q = std::max<int32_t>(1, hi - 1); q <= hi; ++q) {
      const double d = a - q;
      const double c = d * d + lambda * est.bits(model, sign * q, 0);
      if (c < best_cost) {
        best_cost = c;
        best = q;
      }
    }
    k[order[i]] = sign * best;
    est.update(model, sign * best, 0);
    if (row_end[i]) est.reset(model);
  }
  return true;
}

bool quantize_dependent_rd(const float* w, int32_t* k, const TensorParams& shape, float step, double lambda_scale) {
  if (lambda_scale <= 0) return quantize_dependent(w, k, shape, step);
  static const std::array<std::vector<Branch>, 8> conn = make_connections();
  const double lambda = lambda_scale * 4.0 * kLn2Over6 * 0.7;
  const double qscale = 1.0 / double(step);
  const float fscale = 1.0f / step;
  const RateEstimator est(shape.num_gtx);
  std::array<RateModel, 8> models, next_models;
  for (auto& m : models) est.init(m);
  for (auto& m : next_models) est.init(m);
  std::vector<uint8_t> row_end;
  const std::vector<uint64_t> order = scan_order_of(shape, row_end);
  const uint64_t n = order.size();
  std::vector<std::array<uint8_t, 8>> dec(n);
  std::vector<std::array<int32_t, 8>> levels(n);
  std::array<double, 8> cost, next;
  cost.fill(std::numeric_limits<double>::infinity());
  cost[0] = 0.0;
  for (uint64_t i = 0; i < n; ++i) {
    const float wv = w[order[i]];
    const double check = std::round(wv * fscale);
    if (check > double((1u << 31) - 3) || check < -double((1u << 31) - 2)) return false;
    double dist[5];
    int32_t qv[5];
    trellis_candidates(qscale, wv, dist, qv);
    for (int s = 0; s < 8; ++s) {
      double best = std::numeric_limits<double>::infinity();
      int choice = -1;
      for (size_t b = 0; b < conn[s].size(); ++b) {
        const Branch& br = conn[s][b];
        if (!std::isfinite(cost[br.prev])) continue;
        const double c = cost[br.prev] + dist[br.slot] + lambda * est.bits(models[br.prev], qv[br.slot], br.prev);
        if (c < best) {
          best = c;
          choice = int(b);
        }
      }
      next[s] = best;
      if (choice < 0) {
        dec[i][s] = 0xFF;
        continue;
      }
      const Branch& br = conn[s][choice];
      dec[i][s] = uint8_t(br.prev);
      levels[i][s] = qv[br.slot];
      next_models[s].ctx = models[br.prev].ctx;
      next_models[s].neighbour = models[br.prev].neighbour;
      est.update(next_models[s], qv[br.slot], br.prev);
      if (row_end[i]) est.reset(next_models[s]);
    }
    cost = next;
    std::swap(models, next_models);
  }
  int s = 0;
  for (int i = 1; i < 8; ++i)
    if (cost[i] < cost[s]) s = i;
  for (uint64_t i = n; i-- > 0;) {
    const int prev = dec[i][s];
    if (prev == 0xFF) return false;
    int32_t v = levels[i][s];
    if (v != 0) v = 2 * v + (v < 0 ? (prev & 1) : -(prev & 1));
    k[order[i]] = v;
    s = prev;
  }
  return true;
}

}  // namespace nnr
