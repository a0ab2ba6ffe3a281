#include "nnr/quant.h"

#include <array>
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

bool quantize_dependent(const float* w, int32_t* k, const TensorParams& shape, float step) {
  static const std::array<std::vector<Branch>, 8> conn = make_connections();
  const uint64_t n = shape.size();
  std::vector<uint64_t> order;
  order.reserve(n);
  scan_positions(shape, [&](uint64_t pos) { order.push_back(pos); });

  const float fscale = 1.0f / step;
  const double qscale = 1.0 / double(step);
  std::vector<std::array<Decision, 8>> dec(n);
  std::array<double, 8> cost, next;
  cost.fill(0.5 * std::numeric_limits<double>::max());
  cost[0] = 0.0;
  auto candidates = [&](float wv, std::array<Candidate, 5>& cand) {
    const int32_t sign = wv < 0 ? -1 : 1;
    const double org = qscale * double(wv) * double(sign);
    cand[4] = {org * org, 0};
    const int32_t lo = std::max<int32_t>(1, int32_t(org) - 1);
    for (int32_t qi = lo; qi < lo + 4; ++qi) {
      const double d = org - double(qi);
      cand[qi & 3] = {d * d, sign * ((qi + 1) >> 1)};
    }
  };
  std::array<Candidate, 5> cand;
  for (uint64_t i = 0; i < n; ++i) {
    const float wv = w[order[i]];
    const double check = std::round(wv * fscale);
    if (check > double((1u << 31) - 3) || check < -double((1u << 31) - 2)) return false;
    candidates(wv, cand);
    for (int s = 0; s < 8; ++s) {
      double best = std::numeric_limits<double>::max();
      Decision d = 0;
      for (const Branch& b : conn[s]) {
        const double c = cost[b.prev] + cand[b.slot].dist;
        if (c < best) {
          best = c;
          d = Decision(b.prev | (b.slot << 3));
        }
      }
      next[s] = best;
      dec[i][s] = d;
    }
    cost = next;
  }
  int s = 0;
  for (int i = 1; i < 8; ++i)
    if (cost[i] < cost[s]) s = i;
  for (uint64_t i = n; i-- > 0;) {
    const Decision d = dec[i][s];
    candidates(w[order[i]], cand);
    s = d & 7;
    int32_t v = cand[d >> 3].q;
    if (v != 0) v = 2 * v + (v < 0 ? (s & 1) : -(s & 1));
    k[order[i]] = v;
  }
  return true;
}

}  // namespace nnr
