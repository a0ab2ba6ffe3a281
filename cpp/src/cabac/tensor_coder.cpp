// Tensor loop of DeepCABAC: payload elements per tensor, context selection, binarization,
// scan orders with entry points, dependent-quantization states, row skipping, TCA and HDSP.
#include "nnr/tensor_coder.h"

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <system_error>
#include <limits>
#include <thread>

#include "binarization.h"
#include "nnr/cabac.h"

namespace nnr {

namespace {
using namespace nnr::detail;

// One entry of the init-signalling list: context index and whether a flag is coded for it.
struct Signalled {
  int ctx;
  bool coded;
};

std::vector<Signalled> init_signalling(const TensorParams& p, const Layout& L, bool tca, bool hdsp,
                                       const Codebook& cb) {
  std::vector<Signalled> list;
  const bool any = cb.size != 1;
  const int sig_end = p.dq ? 24 : 3;
  for (int i = 0; i < sig_end; ++i) list.push_back({Layout::kSig + i, any});
  if (p.legacy_v03) {
    for (int a = 0; a < 3; ++a) list.push_back({Layout::kSign + a, true});
    for (int a = 0; a < int(2 * p.num_gtx); ++a) list.push_back({Layout::kGtx + a, true});
    for (int a = 0; a < 32; ++a) list.push_back({L.rem() + a, true});
    return list;
  }
  if (tca)
    for (int i = 24; i < (p.dq ? 40 : 26); ++i) list.push_back({i, any});
  if (hdsp)
    for (int i = 40; i < (p.dq ? 48 : 41); ++i) list.push_back({i, any});
  const bool sign_coded = !cb.sign_inferred() && any;
  for (int a = 0; a < (tca ? 5 : 3); ++a) list.push_back({Layout::kSign + a, sign_coded});
  const int64_t m = cb.max_abs_any();
  const int n2 = int(2 * p.num_gtx);
  for (int a = 0; a < n2; ++a) list.push_back({Layout::kGtx + a, m == -1 || a < m * 2});
  if (tca)
    for (int a = n2; a < 2 * n2; ++a) list.push_back({Layout::kGtx + a, m == -1 || a < (m - 1) * 2 + n2});
  int64_t level = int64_t(p.num_gtx) - 1;
  for (int a = 0; a < 31; ++a) {
    level += int64_t(1) << a;
    list.push_back({L.rem() + a, m == -1 || level < m});
  }
  return list;
}

struct EstimatorSink {
  InitSetEstimator& est;
  static int at(int c) { return c; }
  void bin(uint32_t b, int c) { est.record(b, c); }
  void bypass(uint32_t, uint32_t) {}
};

// The tensor loop's sink: a local copy of the encoder (its state can then stay in registers)
// and the context store as a plain pointer.
struct LocalCoderSink {
  BinEncoder enc;
  Context* ctx;
  Context* at(int c) const { return ctx + c; }
  NNR_HOT_INLINE void bin(uint32_t b, int c) { enc.encode(b, ctx[c]); }
  NNR_HOT_INLINE void bin(uint32_t b, Context* c) { enc.encode(b, *c); }
  NNR_HOT_INLINE void bypass(uint32_t bins, uint32_t count) { enc.encode_bypass_bins(bins, count); }
};

// Walks the positions of a tensor in scan order as runs of consecutive positions:
// code(start, count) for the coded positions start .. start + count - 1 of one row of a block,
// skip() for a skipped row segment, block_row_end() between block rows.
template <class Code, class Skip, class End>
void walk_runs(const TensorParams& p, const uint8_t* row_skip, Code&& code, Skip&& skip, End&& block_row_end,
               uint32_t first_block_row = 0, uint32_t end_block_row = ~0u) {
  const int scan = p.effective_scan();
  const uint32_t bw = scan ? (4u << scan) : p.cols;
  const uint32_t bh = scan ? (4u << scan) : p.rows;
  uint32_t br = 0;
  for (uint32_t y0 = 0; y0 < p.rows; y0 += bh, ++br) {
    if (br < first_block_row) continue;
    if (br >= end_block_row) break;
    if (br > first_block_row) block_row_end();
    const uint32_t y1 = std::min(p.rows, y0 + bh);
    for (uint32_t x0 = 0; x0 < p.cols; x0 += bw) {
      const uint32_t x1 = std::min(p.cols, x0 + bw);
      if (scan == 0 && row_skip == nullptr) {  // raster without skipped rows: one run
        code(uint64_t(0), uint64_t(p.rows) * p.cols);
        continue;
      }
      for (uint32_t y = y0; y < y1; ++y) {
        if (row_skip && row_skip[y]) {
          skip();
          continue;
        }
        code(uint64_t(y) * p.cols + x0, uint64_t(x1 - x0));
      }
    }
  }
}

// walk_runs position by position: code(pos).
template <class Code, class Skip, class End>
void walk(const TensorParams& p, const uint8_t* row_skip, Code&& code, Skip&& skip, End&& block_row_end,
          uint32_t first_block_row = 0, uint32_t end_block_row = ~0u) {
  walk_runs(
      p, row_skip,
      [&](uint64_t start, uint64_t count) {
        for (uint64_t pos = start; pos < start + count; ++pos) code(pos);
      },
      skip, block_row_end, first_block_row, end_block_row);
}

bool payload_flags_present(const TensorParams& p) {
  return p.profile == 1 && p.cols > 1 && p.rows > 1 && !(p.codebook_size == 1);
}

Codebook codebook_of(const TensorParams& p) {
  Codebook cb;
  if (p.profile == 1) {
    cb.size = p.codebook_size;
    cb.zero = p.codebook_zero_offset;
  }
  return cb;
}

bool first_row_reset(const TensorParams& p) {
  if (p.effective_scan() == 0) return false;
  return p.legacy_v03 || p.block_rows() > 1;
}

void check_params(const TensorParams& p) {
  if (p.scan_order < 0 || p.scan_order > 4) throw Error(ErrorKind::NonConforming, "scan_order out of range");
  if (p.num_gtx < 1 || p.num_gtx > 256) throw Error(ErrorKind::NonConforming, "cabac_unary_length out of range");
  if (p.qp_bits < 1 || p.qp_bits > 32) throw Error(ErrorKind::Config, "qp field width out of range");
  if (p.codebook_size > 0 && p.codebook_zero_offset >= p.codebook_size)
    throw Error(ErrorKind::NonConforming, "codebook zero offset outside the codebook");
}

// ------------------------------------------------------------------------------- decoding

class TensorDecoder {
 public:
  TensorDecoder(BinDecoder& dec, const TensorParams& p) : dec_(dec), p_(p), L_(p.num_gtx), cb_(codebook_of(p)) {
    ctx_.resize(L_.size());
    for (auto& c : ctx_) c.init(0);
  }

  void run(int32_t* out, TensorSide& side) {
    if (p_.has_qp) {
      const uint32_t bits = dec_.decode_bypass_bins(uint32_t(p_.qp_bits));
      const int sh = 32 - p_.qp_bits;
      side.qp = int32_t(uint32_t(bits) << sh) >> sh;
    }
    side.hdsp = false;
    side.row_skip_enabled = false;
    side.row_skip.clear();
    if (payload_flags_present(p_) && !p_.legacy_v03) {
      if (p_.parent_node_id_present) side.hdsp = dec_.decode_bypass() != 0;
      side.row_skip_enabled = dec_.decode_bypass() != 0;
      if (side.row_skip_enabled) {
        side.row_skip.resize(p_.rows);
        for (uint32_t r = 0; r < p_.rows; ++r) side.row_skip[r] = uint8_t(dec_.decode(ctx_[L_.row_skip()]));
      }
    }
    const bool tca = p_.tca_base != nullptr && p_.profile == 1;
    const uint8_t* hist = (side.hdsp && p_.profile == 1) ? p_.hdsp_hist : nullptr;
    side.init_sets.clear();
    for (const Signalled& s : init_signalling(p_, L_, tca, side.hdsp, cb_)) {
      int set = 0;
      if (s.coded && dec_.decode(ctx_[L_.shift_flag()])) set = 1 + int(dec_.decode_bypass_bins(3));
      ctx_[s.ctx].init(set);
      side.init_sets.push_back(uint8_t(set));
    }
    side.level_start_bit = dec_.bit_position();
    side.entry_points.clear();
    if (first_row_reset(p_)) dec_.entry_point_start();

    const uint8_t* skip = side.row_skip_enabled ? side.row_skip.data() : nullptr;
    if (skip) std::fill(out, out + p_.size(), 0);  // skipped rows are zero; the rest is written
    const uint32_t rows = p_.block_rows();
    if (p_.threads > 1 && rows > 1 && p_.entry_point_deltas.size() + 1 == rows) {
      decode_parallel(out, side, tca, hist, skip, rows);
      return;
    }
    decode_rows(dec_, ctx_, 0, out, tca, hist, skip, side.entry_points, 0, ~0u);
  }

 private:
  // Decodes block rows [first, end) with `dec` and contexts `ctx` from DQ state `state`;
  // returns the DQ state at the end. Entry points met inside are appended to `eps`.
  int decode_rows(BinDecoder& dec, std::vector<Context>& ctx, int state, int32_t* out, bool tca,
                  const uint8_t* hist, const uint8_t* skip, std::vector<EntryPointState>& eps,
                  uint32_t first, uint32_t end) {
    // The loop works on a local copy of the decoder whose address is never taken, so that its
    // state lives in registers; the caller's decoder gets the final state.
    BinDecoder d = dec;
    if (cb_.size == 0 && !tca && hist == nullptr)
      state = decode_rows_plain(d, ctx.data(), state, out, skip, eps, first, end);
    else
      state = decode_rows_general(d, ctx.data(), state, out, tca, hist, skip, eps, first, end);
    dec = d;
    return state;
  }

  // The common case: no codebook limits (profile 0, or profile 1 without a codebook), no TCA,
  // no HDSP. Then the sign is always coded, every greater-than flag up to num_gtx and every
  // remainder prefix bin is coded (max_abs == -1 in decode_level), the contexts depend only on
  // the DQ state and the class of the previous level, and the greater-than contexts of one
  // sign are every other context from kGtx + (level < 0). Same bins, contexts and checks as
  // decode_level, in the same order.
  int decode_rows_plain(BinDecoder& dec, Context* ctx, int state, int32_t* out, const uint8_t* skip,
                        std::vector<EntryPointState>& eps, uint32_t first, uint32_t end) {
    const bool dq = p_.dq;
    const uint32_t cols = p_.cols;
    const size_t num_ctx = size_t(L_.size());
    uint32_t st = uint32_t(state), cls = 0;  // DQ state, Modeler::cls of the previous level
    walk_runs(
        p_, skip,
        [&](uint64_t start, uint64_t count) {
          if (dq)
            decode_run<true>(dec, ctx, L_, p_.legacy_v03, out + start, count, st, cls);
          else
            decode_run<false>(dec, ctx, L_, p_.legacy_v03, out + start, count, st, cls);
        },
        [&]() {
          if (dq)
            for (uint32_t a = 0; a < cols; ++a) st = dq_next(st, 0);
        },
        [&]() {
          for (size_t i = 0; i < num_ctx; ++i) ctx[i].reset();
          cls = 0;
          dec.entry_point_start();
          eps.push_back({dec.bit_position(), dec.offset9(), st});
        },
        first, end);
    return int(st);
  }

  // decode_rows_plain's levels at `count` consecutive positions. Everything the loop carries
  // (the decoder's registers, the DQ state, the neighbour class) is a local here, so that it
  // stays in registers; the DQ transition is dq_next (a shift, not a load).
  template <bool kDq>
  static void decode_run(BinDecoder& dec_io, Context* ctx, const Layout& L, bool legacy, int32_t* out, uint64_t count,
                         uint32_t& state_io, uint32_t& cls_io) {
    BinDecoder dec = dec_io;
    Context* const rem = ctx + L.rem();
    const uint32_t num_gtx = L.num_gtx;
    const uint32_t cap = legacy ? 32 : 31;  // remainder prefix bins
    uint32_t state = state_io, cls = cls_io;
    for (int32_t* const out_end = out + count; out != out_end; ++out) {
      // Bins the loop branches on anyway are decoded with decode_raw and the context is
      // updated with the then known constant bin.
      Context& sig = ctx[Layout::kSig + 3 * state + cls];
      if (!dec.decode_raw(sig)) {
        sig.update(0);
        *out = 0;
        cls = 0;
        if (kDq) state = dq_next(state, 0);
        continue;
      }
      sig.update(1);
      const uint32_t negative = dec.decode(ctx[Layout::kSign + cls]);
      // Greater-than flags until a 0 or num_gtx of them; v = 1 + the number of ones.
      Context* const g0 = ctx + Layout::kGtx + negative;
      Context* const g_end = g0 + 2 * num_gtx;
      Context* g = g0;
      do {
        if (!dec.decode_raw(*g)) {
          g->update(0);
          break;
        }
        g->update(1);
        g += 2;
      } while (g != g_end);
      uint64_t v = 1 + uint64_t(g - g0) / 2;
      if (g == g_end) {  // all num_gtx flags set: remainder
        // Prefix: ones until a 0 or cap of them; each 1 adds 2^i (bits ones: 2^bits - 1).
        uint32_t bits = 0;
        for (; bits < cap; ++bits) {
          if (!dec.decode_raw(rem[bits])) {
            rem[bits].update(0);
            break;
          }
          rem[bits].update(1);
        }
        v += (uint64_t(1) << bits) - 1;
        if (legacy && bits == cap) throw Error(ErrorKind::NonConforming, "remainder prefix longer than 32 bins");
        v += dec.decode_bypass_bins(bits);
        if (v > (uint64_t(1) << 31)) throw Error(ErrorKind::NonConforming, "decoded level exceeds 32 bits");
      }
      int64_t k = negative ? -int64_t(v) : int64_t(v);
      if (kDq) {
        const int64_t odd = int64_t(state & 1);
        k = 2 * k + (negative ? odd : -odd);
        state = dq_next(state, uint32_t(v & 1));
      }
      if (k > std::numeric_limits<int32_t>::max() || k < std::numeric_limits<int32_t>::min())
        throw Error(ErrorKind::NonConforming, "decoded level exceeds 32 bits");
      *out = int32_t(k);
      cls = negative ? 1 : 2;
    }
    dec_io = dec;
    state_io = state;
    cls_io = cls;
  }

  int decode_rows_general(BinDecoder& dec, Context* ctx, int state, int32_t* out, bool tca, const uint8_t* hist,
                          const uint8_t* skip, std::vector<EntryPointState>& eps, uint32_t first, uint32_t end) {
    Modeler m;
    const size_t num_ctx = size_t(L_.size());
    walk_runs(
        p_, skip,
        [&](uint64_t start, uint64_t count) { decode_run_general(dec, ctx, out, start, count, tca, hist, state, m); },
        [&]() {
          if (p_.dq)
            for (uint32_t a = 0; a < p_.cols; ++a) state = kDqNext[state][0];
        },
        [&]() {
          for (size_t i = 0; i < num_ctx; ++i) ctx[i].reset();
          m = Modeler();
          dec.entry_point_start();
          eps.push_back({dec.bit_position(), dec.offset9(), uint32_t(state)});
        },
        first, end);
    return state;
  }

  // decode_rows_general's positions start .. start + count - 1 on a local copy of the decoder
  // (as decode_run).
  void decode_run_general(BinDecoder& dec_io, Context* ctx, int32_t* out, uint64_t start, uint64_t count, bool tca,
                          const uint8_t* hist, int& state_io, Modeler& m_io) const {
    BinDecoder dec = dec_io;
    int state = state_io;
    Modeler m = m_io;
    for (uint64_t pos = start; pos < start + count; ++pos) {
      if (tca) m.base = p_.tca_base[pos];
      if (p_.profile == 1) m.hdsp = hist != nullptr && hist[pos] == 1;
      const int64_t q = decode_level(dec, ctx, m, state);
      m.neighbour = int32_t(q);
      int64_t k = q;
      if (p_.dq) {
        if (q != 0) k = 2 * q + (q < 0 ? (state & 1) : -(state & 1));
        state = kDqNext[state][q & 1];
      }
      if (k > std::numeric_limits<int32_t>::max() || k < std::numeric_limits<int32_t>::min())
        throw Error(ErrorKind::NonConforming, "decoded level exceeds 32 bits");
      out[pos] = int32_t(k);
    }
    dec_io = dec;
    state_io = state;
    m_io = m;
  }

  // Block rows in parallel: chunk c starts at its entry point, and must end exactly where the
  // next chunk's entry point says (bit position, offset, DQ state).
  void decode_parallel(int32_t* out, TensorSide& side, bool tca, const uint8_t* hist, const uint8_t* skip,
                       uint32_t rows) {
    std::vector<EntryPointState> abs;
    uint64_t pos = side.level_start_bit;
    for (const auto& d : p_.entry_point_deltas) {
      pos += d.bit_position;
      abs.push_back({pos, d.cabac_offset, d.dq_state});
    }
    const uint32_t chunks = std::min<uint32_t>(uint32_t(p_.threads), rows);
    std::vector<uint32_t> start(chunks + 1);
    for (uint32_t c = 0; c <= chunks; ++c) start[c] = uint32_t(uint64_t(rows) * c / chunks);
    std::vector<BinDecoder> decs;
    std::vector<std::vector<EntryPointState>> eps(chunks);
    std::vector<int> end_state(chunks);
    decs.push_back(dec_);
    for (uint32_t c = 1; c < chunks; ++c) {
      const EntryPointState& e = abs[start[c] - 1];
      decs.push_back(dec_.at_entry_point(e.bit_position, e.cabac_offset));
    }
    std::vector<std::exception_ptr> errors(chunks);
    auto work = [&](uint32_t c) {
      try {
        std::vector<Context> ctx = ctx_;
        const int state0 = c == 0 ? 0 : int(abs[start[c] - 1].dq_state & 7);
        end_state[c] = decode_rows(decs[c], ctx, state0, out, tca, hist, skip, eps[c], start[c], start[c + 1]);
      } catch (...) {
        errors[c] = std::current_exception();
      }
    };
    std::vector<std::thread> pool;
    uint32_t started = 1;
    try {
      for (; started < chunks; ++started) pool.emplace_back(work, started);
    } catch (const std::system_error&) {
      // no thread to be had: the chunks not started run here, one after the other
    }
    work(0);
    for (uint32_t c = started; c < chunks; ++c) work(c);
    for (auto& t : pool) t.join();
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
    for (uint32_t c = 0; c + 1 < chunks; ++c) {
      BinDecoder& d = decs[c];
      d.entry_point_start();
      const EntryPointState& e = abs[start[c + 1] - 1];
      if (d.bit_position() != e.bit_position || d.offset9() != e.cabac_offset ||
          (p_.dq && uint32_t(end_state[c]) != e.dq_state))
        throw Error(ErrorKind::NonConforming, "an entry point does not match the payload");
    }
    side.entry_points.clear();
    for (uint32_t c = 0; c < chunks; ++c) {
      if (c > 0) side.entry_points.push_back(abs[start[c] - 1]);
      side.entry_points.insert(side.entry_points.end(), eps[c].begin(), eps[c].end());
    }
    dec_ = decs[chunks - 1];
  }

 private:
  NNR_HOT_INLINE int64_t decode_level(BinDecoder& dec, Context* ctx, const Modeler& m, int state) const {
    if (p_.profile == 1 && cb_.size == 1) return 0;
    if (!dec.decode(ctx[m.sig(state)])) return 0;
    int64_t v = 1;
    bool negative;
    if (cb_.sign_inferred())
      negative = cb_.zero != 0;
    else
      negative = dec.decode(ctx[m.sign()]) != 0;
    const int64_t max_abs = cb_.max_abs(negative);
    if (max_abs > 1 || max_abs == -1) {
      uint32_t gr = 0;
      int64_t j = -1;
      do {
        j++;
        gr = dec.decode(ctx[m.gtx(L_, !negative, uint32_t(j))]);
        v += gr;
      } while (gr && j < int64_t(L_.num_gtx) - 1 && (max_abs > v || max_abs == -1));
      if (gr && (max_abs > v || max_abs == -1)) {
        const int cap = p_.legacy_v03 ? 32 : 31;
        uint32_t rem_bits = 0;
        j = -1;
        do {
          j++;
          gr = dec.decode(ctx[L_.rem() + int(j)]);
          if (gr && (max_abs > v || max_abs == -1)) {
            v += int64_t(1) << rem_bits;
            rem_bits++;
          }
        } while (gr && j < cap - 1 && (max_abs >= v + (int64_t(1) << rem_bits) || max_abs == -1));
        if (gr && p_.legacy_v03 && j == cap - 1)
          throw Error(ErrorKind::NonConforming, "remainder prefix longer than 32 bins");
        v += dec.decode_bypass_bins(rem_bits);
      }
    }
    if (v > (int64_t(1) << 31)) throw Error(ErrorKind::NonConforming, "decoded level exceeds 32 bits");
    return negative ? -v : v;
  }

  BinDecoder& dec_;
  const TensorParams& p_;
  Layout L_;
  Codebook cb_;
  std::vector<Context> ctx_;
};

// ------------------------------------------------------------------------------- encoding

class TensorEncoder {
 public:
  TensorEncoder(BinEncoder& enc, const TensorParams& p) : enc_(enc), p_(p), L_(p.num_gtx), cb_(codebook_of(p)) {
    ctx_.resize(L_.size());
    for (auto& c : ctx_) c.init(0);
  }

  void run(const int32_t* k, TensorSide& side, bool param_opt) {
    if (p_.has_qp) {
      const uint32_t mask = p_.qp_bits >= 32 ? 0xFFFFFFFFu : ((1u << p_.qp_bits) - 1);
      enc_.encode_bypass_bins(uint32_t(side.qp) & mask, uint32_t(p_.qp_bits));
    }
    const bool flags = payload_flags_present(p_) && !p_.legacy_v03;
    if (!flags || !p_.parent_node_id_present) side.hdsp = false;
    if (!flags) side.row_skip_enabled = false;
    if (side.row_skip_enabled && side.row_skip.size() != p_.rows)
      throw Error(ErrorKind::Config, "row_skip needs one flag per row");
    if (flags) {
      if (p_.parent_node_id_present) enc_.encode_bypass(side.hdsp ? 1 : 0);
      enc_.encode_bypass(side.row_skip_enabled ? 1 : 0);
      if (side.row_skip_enabled)
        for (uint32_t r = 0; r < p_.rows; ++r) enc_.encode(side.row_skip[r] ? 1 : 0, ctx_[L_.row_skip()]);
    }
    const bool tca = p_.tca_base != nullptr && p_.profile == 1;
    const uint8_t* hist = (side.hdsp && p_.profile == 1) ? p_.hdsp_hist : nullptr;
    const uint8_t* skip = side.row_skip_enabled ? side.row_skip.data() : nullptr;

    InitSetEstimator est(size_t(L_.size()));
    if (param_opt && (cb_.size != 1 || p_.profile == 0)) estimate_init_sets(k, est, tca, hist, skip);
    est.flush();

    side.init_sets.clear();
    for (const Signalled& s : init_signalling(p_, L_, tca, side.hdsp, cb_)) {
      int set = 0;
      if (s.coded) {
        set = est.best(s.ctx);
        enc_.encode(set ? 1 : 0, ctx_[L_.shift_flag()]);
        if (set) enc_.encode_bypass_bins(uint32_t(set - 1), 3);
      }
      ctx_[s.ctx].init(set);
      side.init_sets.push_back(uint8_t(set));
    }
    if (first_row_reset(p_)) enc_.entry_point_start();

    if (cb_.size == 0 && !tca && hist == nullptr)
      encode_rows_plain(k, skip);
    else
      encode_rows_general(k, tca, hist, skip);
  }

 private:
  // The tensor loops run in kernels (encode_run, encode_run_general) on a local copy of the
  // encoder whose address is never taken (the bin coders are forced inline), so that its state
  // lives in registers; the caller's encoder gets the final state. (A copy reached through the
  // walk lambdas' reference captures was written back to memory at every bin.)

  // The common case (see code_level_plain): no codebook, no TCA, no HDSP; the contexts depend
  // only on the DQ state and the class of the previous level.
  void encode_rows_plain(const int32_t* k, const uint8_t* skip) {
    Context* const ctx = ctx_.data();
    const size_t num_ctx = ctx_.size();
    const bool dq = p_.dq;
    uint32_t state = 0, cls = 0;  // DQ state, Modeler::cls of the previous level
    walk_runs(
        p_, skip,
        [&](uint64_t start, uint64_t count) {
          if (dq)
            encode_run<true>(enc_, ctx, L_, k + start, count, state, cls);
          else
            encode_run<false>(enc_, ctx, L_, k + start, count, state, cls);
        },
        [&]() {
          if (dq)
            for (uint32_t a = 0; a < p_.cols; ++a) state = kDqNext[state][0];
        },
        [&]() {
          for (size_t i = 0; i < num_ctx; ++i) ctx[i].reset();
          cls = 0;
          enc_.entry_point_start();
        });
  }

  // encode_rows_plain's levels at `count` consecutive positions, on a local copy of the
  // encoder (its state then stays in registers: a copy reached through a lambda's reference
  // was written back to memory at every bin).
  template <bool kDq>
  static void encode_run(BinEncoder& enc_io, Context* ctx, const Layout& L, const int32_t* k, uint64_t count,
                         uint32_t& state_io, uint32_t& cls_io) {
    LocalCoderSink sink{enc_io, ctx};
    uint32_t state = state_io, cls = cls_io;
    for (const int32_t* const end = k + count; k != end; ++k) {
      const int32_t q = kDq ? dq_level(*k, state) : *k;
      code_level_plain(sink, L, q, sink.at(Layout::kSig + 3 * int(state) + int(cls)), sink.at(Layout::kSign + int(cls)));
      cls = uint32_t(Modeler::cls(q));
      if (kDq) state = uint32_t(kDqNext[state][q & 1]);
    }
    enc_io = sink.enc;
    state_io = state;
    cls_io = cls;
  }

  void encode_rows_general(const int32_t* k, bool tca, const uint8_t* hist, const uint8_t* skip) {
    Context* const ctx = ctx_.data();
    const size_t num_ctx = ctx_.size();
    int state = 0;
    Modeler m;
    walk_runs(
        p_, skip,
        [&](uint64_t start, uint64_t count) { encode_run_general(enc_, ctx, k, start, count, tca, hist, state, m); },
        [&]() {
          if (p_.dq)
            for (uint32_t a = 0; a < p_.cols; ++a) state = kDqNext[state][0];
        },
        [&]() {
          for (size_t i = 0; i < num_ctx; ++i) ctx[i].reset();
          m = Modeler();
          enc_.entry_point_start();
        });
  }

  // encode_rows_general's positions start .. start + count - 1 on a local copy of the encoder
  // (as encode_run).
  void encode_run_general(BinEncoder& enc_io, Context* ctx, const int32_t* k, uint64_t start, uint64_t count,
                          bool tca, const uint8_t* hist, int& state_io, Modeler& m_io) const {
    LocalCoderSink sink{enc_io, ctx};
    int state = state_io;
    Modeler m = m_io;
    for (uint64_t pos = start; pos < start + count; ++pos) {
      const int32_t q = q_of(k[pos], state);
      if (tca) m.base = p_.tca_base[pos];
      if (p_.profile == 1) m.hdsp = hist != nullptr && hist[pos] == 1;
      code_level(sink, L_, m, q, state, cb_);
      m.neighbour = q;
      if (p_.dq) state = kDqNext[state][q & 1];
    }
    enc_io = sink.enc;
    state_io = state;
    m_io = m;
  }

  // q from the multiplier k at DQ state s (k = 2q - sgn(q)(s & 1)).
  int32_t q_of(int32_t k, int state) const { return p_.dq ? dq_level(k, uint32_t(state)) : k; }
  static int32_t dq_level(int32_t k, uint32_t state) {
    if (k == 0) return 0;
    const int64_t v = int64_t(k) + (k < 0 ? -int64_t(state & 1) : int64_t(state & 1));
    if (v & 1) throw Error(ErrorKind::Config, "level not representable in the current DQ state");
    return int32_t(v >> 1);
  }

  // NNCodec's pseudo-encoding pass: estimated bits of every init set per context. NNCodec runs
  // it on the multipliers k with the general binarization (an encoder-side quirk, kept with
  // init_estimate_on_multipliers so that the chosen sets equal NNCodec's); otherwise it runs on
  // the levels q, i.e. on the bins the tensor is then coded with.
  void estimate_init_sets(const int32_t* k, InitSetEstimator& est, bool tca, const uint8_t* hist,
                          const uint8_t* skip) {
    EstimatorSink sink{est};
    const Codebook none;
    int state = 0;
    Modeler m;
    uint64_t seen = 0;
    const uint64_t limit = p_.init_estimate_limit ? p_.init_estimate_limit : ~uint64_t(0);
    // Without TCA / HDSP the general binarization with no codebook is code_level_plain's.
    const bool plain = !tca && !(p_.profile == 1 && hist != nullptr);
    const bool on_k = p_.init_estimate_on_multipliers;
    walk(
        p_, skip,
        [&](uint64_t pos) {
          if (seen >= limit) return;  // the first `limit` positions in scan order decide
          ++seen;  // (the estimator bounds its pending bins itself: a full chunk is replayed)
          const int32_t q = q_of(k[pos], state);
          const int32_t v = on_k ? k[pos] : q;
          if (plain) {
            const int cls = Modeler::cls(m.neighbour);
            code_level_plain(sink, L_, v, sink.at(Layout::kSig + 3 * state + cls), sink.at(Layout::kSign + cls));
          } else {
            if (tca) m.base = p_.tca_base[pos];
            if (p_.profile == 1) m.hdsp = hist != nullptr && hist[pos] == 1;
            code_level(sink, L_, m, v, state, none);
          }
          m.neighbour = v;
          if (p_.dq) state = kDqNext[state][q & 1];
        },
        [&]() {
          if (p_.dq)
            for (uint32_t a = 0; a < p_.cols; ++a) state = kDqNext[state][0];
        },
        [&]() {
          est.reset();
          if (p_.legacy_v03) m.neighbour = 0;  // 0.3.x resets the neighbour here, 2.x does not
        });
  }

  BinEncoder& enc_;
  const TensorParams& p_;
  Layout L_;
  Codebook cb_;
  std::vector<Context> ctx_;
};

}  // namespace

uint32_t TensorParams::block_rows() const {
  const int scan = effective_scan();
  if (scan == 0) return 0;
  const uint32_t bh = 4u << scan;
  return (rows + bh - 1) / bh;
}

size_t decode_payload(const uint8_t* data, size_t size, const std::vector<TensorParams>& params,
                      const std::vector<int32_t*>& out, std::vector<TensorSide>& side) {
  if (out.size() != params.size()) throw Error(ErrorKind::Config, "one output buffer per tensor needed");
  side.assign(params.size(), TensorSide());
  BinDecoder dec(data, size);
  for (size_t i = 0; i < params.size(); ++i) {
    check_params(params[i]);
    TensorDecoder(dec, params[i]).run(out[i], side[i]);
  }
  if (!dec.decode_terminate()) throw Error(ErrorKind::NonConforming, "terminating bin not received");
  if (!dec.stop_pattern_ok()) throw Error(ErrorKind::NonConforming, "no stop bit / alignment pattern at the payload end");
  return dec.bytes_read();
}

std::vector<uint8_t> encode_payload(const std::vector<TensorParams>& params, const std::vector<const int32_t*>& levels,
                                    std::vector<TensorSide>& side, bool param_opt) {
  if (levels.size() != params.size() || side.size() != params.size())
    throw Error(ErrorKind::Config, "one level buffer and side record per tensor needed");
  std::vector<uint8_t> out;
  BinEncoder enc(out);
  for (size_t i = 0; i < params.size(); ++i) {
    check_params(params[i]);
    TensorEncoder(enc, params[i]).run(levels[i], side[i], param_opt);
  }
  enc.encode_terminate(1);
  enc.finish();
  return out;
}

}  // namespace nnr
