// CABAC engine: random sequences of context-coded, bypass and terminating bins (with entry
// points) round-trip through BinEncoder / BinDecoder; the decoder consumes exactly the bytes
// the encoder wrote, ends on the stop pattern, and never reads past its buffer.
#include <random>
#include <vector>

#include "check.h"
#include "nnr/cabac.h"

namespace {

enum class Op { Ctx, Bypass, BypassBins, Terminate0, EntryPoint };

struct Step {
  Op op;
  uint32_t value;  // bin, or bins for BypassBins
  uint32_t count;  // BypassBins: 1..32; Ctx: context index
};

// A random program of bins; `skew` makes context-coded bins mostly 0 (long MPS runs).
std::vector<Step> program(std::mt19937& rng, size_t n, int contexts, double skew) {
  std::vector<Step> steps;
  std::uniform_int_distribution<int> kind(0, 99);
  std::bernoulli_distribution one(skew);
  std::uniform_int_distribution<int> ctx(0, contexts - 1);
  std::uniform_int_distribution<uint32_t> cnt(1, 32);
  for (size_t i = 0; i < n; ++i) {
    const int k = kind(rng);
    if (k < 70) {
      steps.push_back({Op::Ctx, one(rng) ? 1u : 0u, uint32_t(ctx(rng))});
    } else if (k < 82) {
      steps.push_back({Op::Bypass, uint32_t(rng() & 1), 0});
    } else if (k < 94) {
      const uint32_t c = cnt(rng);
      const uint32_t mask = c == 32 ? 0xFFFFFFFFu : ((1u << c) - 1);
      steps.push_back({Op::BypassBins, uint32_t(rng()) & mask, c});
    } else if (k < 99) {
      steps.push_back({Op::Terminate0, 0, 0});
    } else {
      steps.push_back({Op::EntryPoint, 0, 0});
    }
  }
  return steps;
}

std::vector<nnr::Context> contexts(int n, std::mt19937& rng) {
  std::vector<nnr::Context> c(static_cast<size_t>(n));
  std::uniform_int_distribution<int> set(0, 8);
  for (auto& x : c) x.init(set(rng));
  return c;
}

std::vector<uint8_t> encode(const std::vector<Step>& steps, std::vector<nnr::Context> ctx) {
  std::vector<uint8_t> out;
  nnr::BinEncoder enc(out);
  for (const Step& s : steps) {
    switch (s.op) {
      case Op::Ctx: enc.encode(s.value, ctx[s.count]); break;
      case Op::Bypass: enc.encode_bypass(s.value); break;
      case Op::BypassBins: enc.encode_bypass_bins(s.value, s.count); break;
      case Op::Terminate0: enc.encode_terminate(0); break;
      case Op::EntryPoint: enc.entry_point_start(); break;
    }
  }
  enc.encode_terminate(1);
  enc.finish();
  return out;
}

// Decodes `steps` from `data`; returns the number of mismatching bins, -1 on a thrown error.
long decode(const std::vector<Step>& steps, std::vector<nnr::Context> ctx, const uint8_t* data, size_t size,
            size_t* used, bool* stop_ok) {
  try {
    nnr::BinDecoder dec(data, size);
    long bad = 0;
    for (const Step& s : steps) {
      switch (s.op) {
        case Op::Ctx: bad += dec.decode(ctx[s.count]) != s.value; break;
        case Op::Bypass: bad += dec.decode_bypass() != s.value; break;
        case Op::BypassBins: bad += dec.decode_bypass_bins(s.count) != s.value; break;
        case Op::Terminate0: bad += dec.decode_terminate() != 0; break;
        case Op::EntryPoint: dec.entry_point_start(); break;
      }
    }
    bad += dec.decode_terminate() != 1;
    *used = dec.bytes_read();
    *stop_ok = dec.stop_pattern_ok();
    return bad;
  } catch (const nnr::Error& e) {
    return e.kind() == nnr::ErrorKind::Truncated ? -1 : -2;
  }
}

void round_trips() {
  std::mt19937 rng(20240601);
  const double skews[] = {0.5, 0.1, 0.01, 0.0005, 0.9};
  for (int trial = 0; trial < 200; ++trial) {
    const int nctx = 1 + trial % 40;
    const size_t len = size_t(1) << (trial % 14);
    auto steps = program(rng, len, nctx, skews[trial % 5]);
    auto ctx = contexts(nctx, rng);
    const auto bytes = encode(steps, ctx);
    check::GuardedBuffer buf(bytes);
    size_t used = 0;
    bool stop_ok = false;
    CHECK(decode(steps, ctx, buf.data(), buf.size(), &used, &stop_ok) == 0);
    CHECK(used == bytes.size());
    CHECK(stop_ok);
  }
}

// Every proper prefix of a stream: the decoder either throws Truncated or (when the missing
// bytes were not needed yet) decodes without reading past the prefix.
void truncations() {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    auto steps = program(rng, 300, 8, trial % 2 ? 0.02 : 0.5);
    auto ctx = contexts(8, rng);
    const auto bytes = encode(steps, ctx);
    int truncated = 0;
    for (size_t n = 0; n < bytes.size(); ++n) {
      check::GuardedBuffer buf(bytes.data(), n);
      size_t used = 0;
      bool stop_ok = false;
      const long r = decode(steps, ctx, buf.data(), buf.size(), &used, &stop_ok);
      CHECK(r != -2);
      if (r == -1) ++truncated;
      else CHECK(used <= n);
    }
    // all but the last two prefixes lack bytes the decoder needs (it reads two bytes ahead)
    CHECK(truncated + 2 >= int(bytes.size()));
  }
}

// An empty or one-byte buffer: the decoder cannot even start.
void tiny_buffers() {
  const uint8_t one[1] = {0x80};
  for (size_t n = 0; n < 2; ++n) {
    check::GuardedBuffer buf(one, n);
    bool threw = false;
    try {
      nnr::BinDecoder dec(buf.data(), buf.size());
    } catch (const nnr::Error& e) {
      threw = e.kind() == nnr::ErrorKind::Truncated;
    }
    CHECK(threw);
  }
}

// Garbage never crashes the engine: every bin kind on random bytes, until Truncated.
void garbage() {
  std::mt19937 rng(99);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<uint8_t> bytes(size_t(rng() % 64));
    for (auto& b : bytes) b = uint8_t(rng());
    check::GuardedBuffer buf(bytes);
    std::vector<nnr::Context> ctx(4);
    for (auto& c : ctx) c.init(int(rng() % 9));
    bool truncated = false;
    try {
      nnr::BinDecoder dec(buf.data(), buf.size());
      bool ended = false;
      for (int i = 0; i < 100000 && !ended; ++i) {
        switch (rng() % 5) {
          case 0: dec.decode(ctx[rng() % 4]); break;
          case 1: dec.decode_bypass(); break;
          case 2: dec.decode_bypass_bins(1 + rng() % 32); break;
          case 3: ended = dec.decode_terminate() != 0; break;  // a 1 ends the stream
          default: dec.entry_point_start();
        }
        CHECK(dec.bytes_read() <= buf.size());
      }
      truncated = ended;  // the terminating bin came before the data ran out
    } catch (const nnr::Error& e) {
      truncated = e.kind() == nnr::ErrorKind::Truncated;
    }
    CHECK(truncated);
  }
}

// The init-set estimator prefers the set that models a skewed source best.
void estimator() {
  nnr::ContextSetEstimator est;
  est.init();
  for (int i = 0; i < 5000; ++i) est.code(i % 100 == 0 ? 1 : 0);
  const int best = est.best();
  CHECK(best >= 0 && best < 9);
  nnr::ContextSetEstimator flat;
  flat.init();
  CHECK(flat.best() == 0);  // no data: ties keep set 0
}

// The batched estimator (bins recorded, replayed per init set) gives exactly the bits of one
// ContextSetEstimator per context, through resets and flushes at any point.
void batched_estimator() {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 40; ++trial) {
    const int contexts = 1 + int(rng() % 6);
    std::vector<nnr::ContextSetEstimator> ref(static_cast<size_t>(contexts));
    for (auto& e : ref) e.init();
    nnr::InitSetEstimator est(static_cast<size_t>(contexts));
    const uint32_t skew = rng() % 100;  // probability of a 1 in percent
    const int n = int(rng() % 20000);
    for (int i = 0; i < n; ++i) {
      const int c = int(rng() % uint32_t(contexts));
      const uint32_t bin = rng() % 100 < skew ? 1u : 0u;
      ref[size_t(c)].code(bin);
      est.record(bin, c);
      const uint32_t r = rng() % 5000;
      if (r == 0) {
        for (auto& e : ref) e.reset();
        est.reset();
      } else if (r == 1) {
        est.flush();
      }
    }
    est.flush();
    for (int c = 0; c < contexts; ++c) {
      CHECK(est.best(c) == ref[size_t(c)].best());
      for (int set = 0; set < 9; ++set) CHECK(est.bits(c, set) == ref[size_t(c)].bits(set));
    }
  }
}

}  // namespace

int main() {
  round_trips();
  truncations();
  tiny_buffers();
  garbage();
  estimator();
  batched_estimator();
  return check::result("test_engine");
}
