"""Corpus files that still show a bug in a module the malformed tests do not own; their
tests are strict xfails, so that the fix turns them into failures until the entry goes."""

KNOWN_BUGS = {
    "dims_none.nnr": "decoder._check_limits: max() of empty dims raises ValueError",
    "dims_none_block.nnr": "decoder._block_elements: dims[0] of empty dims raises IndexError",
    "hdr_qp_step_overflow_qd0.nnr": "quantization.step_size_double: 2.0 ** 4126 raises "
                                    "OverflowError",
}
