"""DeepCABAC probability models, the context index map and the init-set signalling list.

A context is NNCodec's dual-rate ``SBMPCtx``: a fast state ``s0`` (int8) and the combined
``s01 = s1 + 16*s0`` (int16) with per-context window shifts from one of 9 init sets.
Indices follow NNCodec 2.x's context store (``8*6 + 5 + 4N + 32 + 5`` entries); the profile-0
layout of NNCodec 0.3.1 is the same set of contexts under other numbers, so the legacy coder uses
this layout as well (only the signalling list differs, see :func:`signalled_contexts`).
"""
from __future__ import annotations

from .tables import EST_BITS, INIT_SETS, LPS_TABLE, UPDATE_CURVE


def _update(s0: int, s01: int, shift0: int, shift1: int, bin_: int) -> tuple[int, int]:
    """One probability update after coding ``bin_`` (all shifts arithmetic)."""
    s = 1 if bin_ else -1
    s1 = s01 - 16 * s0
    s0 += s * (UPDATE_CURVE[16 + ((s * s0) >> 3)] >> shift0)
    s1 += s * (UPDATE_CURVE[16 + ((s * s1) >> 7)] >> shift1)
    assert -128 <= s0 <= 127, "int8 S0 overflow"  # never happens with NNCodec's tables
    return s0, s1 + 16 * s0


class ContextModel:
    """One adaptive binary context."""

    __slots__ = ("s0", "s01", "shift0", "shift1", "init_idx")

    def __init__(self, init_idx: int = 0) -> None:
        self.init(init_idx)

    def init(self, init_idx: int) -> None:
        """Take windows and state from init set ``init_idx`` (and remember it for resets)."""
        sh0, sh1, s01, s0 = INIT_SETS[init_idx]
        self.init_idx = init_idx
        self.shift0 = sh0 + 4
        self.shift1 = sh1
        self.s01 = s01
        self.s0 = s0

    def reset(self) -> None:
        """Entry-point reset: state back to the own init set, windows unchanged."""
        _, _, self.s01, self.s0 = INIT_SETS[self.init_idx]

    @property
    def mps(self) -> int:
        return 1 if self.s01 >= 0 else 0

    def lps_range(self, rng: int) -> int:
        # The shift comes before abs(): negative states round toward -infinity first.
        return LPS_TABLE[(rng & 0xE0) + abs(self.s01 >> 7)]

    def update(self, bin_: int) -> None:
        self.s0, self.s01 = _update(self.s0, self.s01, self.shift0, self.shift1, bin_)


class InitSetEstimator:
    """Encoder-only (``SBMPCtxOptimizer``): runs all 9 init sets of one context side by side
    over a pseudo-encoding pass and accumulates their estimated bits."""

    __slots__ = ("states", "bits")

    def __init__(self) -> None:
        self.states = [(s0, s01) for (_, _, s01, s0) in INIT_SETS]
        self.bits = [0] * 9

    def reset(self) -> None:
        """Entry-point reset of the pseudo pass (states only, accumulated bits stay)."""
        self.states = [(s0, s01) for (_, _, s01, s0) in INIT_SETS]

    def add(self, bin_: int) -> None:
        for i, (s0, s01) in enumerate(self.states):
            self.bits[i] += EST_BITS[512 + (s01 >> 3)][bin_]
            sh0, sh1, _, _ = INIT_SETS[i]
            self.states[i] = _update(s0, s01, sh0 + 4, sh1, bin_)

    def best(self) -> int:
        """Cheapest set; any set but 0 pays 3 bits; ties keep the lower index."""
        best, best_bits = 0, self.bits[0]
        for i in range(1, 9):
            if self.bits[i] + 3 * 32768 < best_bits:
                best, best_bits = i, self.bits[i] + 3 * 32768
        return best


# ---------------------------------------------------------------------------------------------
# Context index map (NNCodec 2.x numbering), N = number of greater-than flags.

SIG = 0          # 3*state + c (c: previous level 0 / <0 / >0)
SIG_TCA = 24     # 24 + 2*state + (|base| > 1)
SIG_HDSP = 40    # 40 + state
SIGN = 48        # 48 + c
SIGN_TCA = 51    # 51 base < 0, 52 base > 0
GTX = 53         # 53 + 2n + (level > 0 ? 0 : 1)


def gtx_tca(n_gtx: int) -> int:
    return GTX + 2 * n_gtx                   # + 2n + (|base| >= n ? 0 : 1)


def rem_prefix(n_gtx: int) -> int:
    return GTX + 4 * n_gtx                   # + j, one context per prefix bin


def shift_flag_ctx(n_gtx: int) -> int:
    return GTX + 4 * n_gtx + 32 + 2          # codes "non-default init set" flags


def row_skip_ctx(n_gtx: int) -> int:
    return GTX + 4 * n_gtx + 32 + 4


def num_contexts(n_gtx: int) -> int:
    return GTX + 4 * n_gtx + 32 + 5


def _neighbour_class(prev: int) -> int:
    return 0 if prev == 0 else (1 if prev < 0 else 2)


def sig_ctx(state: int, prev: int, base: int, hdsp_here: bool) -> int:
    if hdsp_here:
        return SIG_HDSP + state
    if base != 0:
        return SIG_TCA + 2 * state + (1 if abs(base) > 1 else 0)
    return SIG + 3 * state + _neighbour_class(prev)


def sign_ctx(prev: int, base: int) -> int:
    if base != 0:
        return SIGN_TCA + (0 if base < 0 else 1)
    return SIGN + _neighbour_class(prev)


def gtx_ctx(n_gtx: int, n: int, negative: bool, base: int) -> int:
    """Context of greater-than flag n (0-based; flag n says |q| > n+1)."""
    if base != 0:
        return gtx_tca(n_gtx) + 2 * n + (0 if abs(base) >= n else 1)
    return GTX + 2 * n + (1 if negative else 0)


def signalled_contexts(n_gtx: int, dq: bool, tca: bool, hdsp: bool, cb_size: int, cb_offset: int,
                       legacy_v03: bool) -> list[tuple[int, bool]]:
    """The contexts whose init set is (re)chosen per tensor, in signalling order, each with
    whether its flag is actually in the stream (contexts listed with False get set 0).

    ``cb_size``/``cb_offset`` are the codebook values that matter for the binarization, i.e.
    (0, 0) except for profile-1 codebook tensors.
    """
    if legacy_v03:  # NNCodec 0.3.1: every context below the last 4 of its store, in order
        out = [(i, True) for i in range(SIG, SIG + (24 if dq else 3))]
        out += [(SIGN + a, True) for a in range(3)]
        out += [(GTX + a, True) for a in range(2 * n_gtx)]
        out += [(rem_prefix(n_gtx) + a, True) for a in range(32)]
        return out
    present = cb_size != 1
    max_abs = max(cb_offset, cb_size - 1 - cb_offset) if cb_size > 0 else -1
    out = [(i, present) for i in range(SIG, SIG + (24 if dq else 3))]
    if tca:
        out += [(i, present) for i in range(SIG_TCA, SIG_TCA + (16 if dq else 2))]
    if hdsp:
        out += [(i, present) for i in range(SIG_HDSP, SIG_HDSP + (8 if dq else 1))]
    sign_inferred = cb_size > 0 and (cb_offset == 0 or cb_offset == cb_size - 1)
    out += [(SIGN + a, present and not sign_inferred) for a in range(5 if tca else 3)]
    out += [(GTX + a, max_abs == -1 or a < 2 * max_abs) for a in range(2 * n_gtx)]
    if tca:
        out += [(GTX + a, max_abs == -1 or a < 2 * (max_abs - 1) + 2 * n_gtx)
                for a in range(2 * n_gtx, 4 * n_gtx)]
    level = n_gtx - 1
    for a in range(31):  # 2.x signals 31 remainder-prefix contexts
        level += 1 << a
        out.append((rem_prefix(n_gtx) + a, max_abs == -1 or level < max_abs))
    return out
