"""What the entropy coder needs to know about one tensor of an NDU payload.

The NDU header and the model parameter set decide these values; ``codec.py`` fills one
:class:`TensorSpec` per tensor, in payload order, and hands the list to the native core (or to
the pure-Python reference coder in ``tests/reference``), which code the whole NDU payload as one
CABAC stream.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["TensorSpec", "TensorCoding", "EntryPoint"]


@dataclass(frozen=True)
class EntryPoint:
    """One entry of ``cabac_entry_point_list`` (absolute form).

    ``bit_position`` is the number of bit shifts of the arithmetic decoder's value register
    since the start of the NDU payload at the start of the block row (NNCodec's ``P``);
    ``cabac_offset`` the decoder's 9-bit offset there (< 256); ``dq_state`` the DQ state.
    """

    bit_position: int
    cabac_offset: int
    dq_state: int


@dataclass
class TensorSpec:
    """Coding parameters of one tensor inside an NDU payload.

    ``rows`` is ``shape[0]`` and ``cols`` ``prod(shape[1:])`` (1 for 1-D tensors), as NNCodec
    views every tensor. ``scan_order`` is the NDU's value; the coder itself falls back to raster
    order when ``rows < 2`` or ``cols < 2``.
    """

    rows: int
    cols: int
    scan_order: int = 0
    dq: bool = False
    has_qp: bool = True            # FLOAT and BLOCK payloads carry iae(6 + qp_density) first
    qp_density: int = 2
    profile: int = 1               # general_profile_idc
    parent_node_id_present: bool = False  # enables the HDSP flag in the payload (profile 1)
    cabac_unary_length: int = 11   # N = cabac_unary_length_minus1 + 1 greater-than flags
    codebook_size: int = 0         # 0: no codebook
    codebook_zero_offset: int = 0  # CbZeroOffset
    tca_base: np.ndarray | None = None      # int32 parent levels k, same element count
    hdsp_history: np.ndarray | None = None  # uint8 mask, 1 where an earlier update was nonzero
    legacy_v03: bool = False       # NNCodec 0.3.x payload: 32 remainder contexts, range reset
    entry_points: list[EntryPoint] = field(default_factory=list)  # decoder may ignore them
    init_estimate_limit: int = 0   # encoder: positions the init-set choice looks at (0: all)
    #: encoder: the init-set estimate runs on the coded levels ("levels") or, as NNCodec's does,
    #: on the DQ multipliers ("nncodec": NNCodec's choices)
    init_estimate: str = "nncodec"
    #: decoder: the coded entry points as (bit_offset_delta, cabac_offset, dq_state); with
    #: threads > 1 block rows are decoded in parallel from them (and each one is checked)
    entry_point_deltas: list[tuple[int, int, int]] = field(default_factory=list)
    threads: int = 1

    @property
    def size(self) -> int:
        return self.rows * self.cols


@dataclass
class TensorCoding:
    """What was coded for one tensor besides its levels (decoder output, encoder input)."""

    qp: int = 0                    # qp_value as coded (relative to the MPS/LPS qp)
    hdsp: bool = False             # hist_dep_sig_prob_enabled_flag
    row_skip: np.ndarray | None = None  # uint8 per row when row_skip_enabled_flag = 1
    init_sets: np.ndarray | None = None  # chosen init set per context (diagnostics)
