"""Slow, pure-Python reference ("oracle") of DeepCABAC and NNCodec's quantizers.

An independent second implementation of the NDU payload coding of NNCodec 2.1.3 (and of
NNCodec 0.3.1 for ``legacy_v03`` profile-0 payloads), written for clarity, not speed. Property
tests compare the native core with it bit for bit.

- :mod:`.tables`        constant tables (LPS ranges, update curve, init sets, rate table, DQ)
- :mod:`.contexts`      dual-rate context models, context index map, init-set signalling list
- :mod:`.engine`        binary arithmetic encoder / decoder
- :mod:`.tensor_coder`  ``encode_payload`` / ``decode_payload`` (binarization, scans, row skip,
                        HDSP, TCA, codebooks, entry points)
- :mod:`.quant`         step size, URQ, the DQ trellis, reconstruction
"""
