"""Decode streams with decomposed (DC) weights and performance maps using NNCodec 2.1.3.

Run with the python of the NNCodec peer environment (tests/peer/setup_peer.sh); imports nothing
from nnr.

    nncodec_dc_driver.py decode IN.nnc OUT.npz [--weights w1,w2] [--patch-lps-flag]
    nncodec_dc_driver.py maps IN.nnc OUT.json [--patch-lps-flag]

``decode`` runs NNCodec's own decoder (``nnc_core.coder.decode`` and dequantization,
``nnc_core.approximator.rec``) and saves the decoded tensors, ``<w>_G`` and ``<w>_H`` included.
It does not call ``recompose_params``, which fails in 2.1.3 (``.pop()`` on an int / a missing
``<w>_G`` key). With ``--weights`` the decoder's model information is told beforehand that
each listed weight forms a block (``block_identifier``); without it 2.1.3 cannot decode a G/H
pair coded as two separate NDUs (UnboundLocalError on ``weight_param``), and
``nnc.decompress``'s ``block_id_and_param_type`` does not help (it is applied to an empty
parameter list before decoding).

``maps`` decodes with ``nnc.decompress(..., return_model_information=True)`` (recomposition
disabled as above) and writes the performance maps NNCodec parsed from the MPS (and from the
last LPS) as JSON.

NNCodec 2.1.3 fails on every NNR_LPS unit: its decoder reads
``lps["lps_decomposition_performance_map_flag"]``, a field its LPS parser never sets
(KeyError). ``--patch-lps-flag`` sets that field to 0 after each LPS is parsed, to show what
NNCodec does with the rest of such a stream.
"""
from __future__ import annotations

import json
import sys

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 3)[0] + "/tests/peer")
import nncodec_driver  # noqa: E402,F401  (stubs torch / tensorflow when they are missing)
from nncodec import nnc_core  # noqa: E402
from nncodec.nnc import compression  # noqa: E402


def _model_info(weights: list[str]) -> dict:
    return {"parameter_type": {}, "parameter_dimensions": {}, "parameter_index": {},
            "block_identifier": {w: "Block_" + w for w in weights},
            "topology_storage_format": None, "topology_compression_format": None,
            "performance_maps": {"mps": {}, "lps": {}},
            "performance_map_flags": {k: {} for k in (
                "mps_sparsification_flag", "lps_sparsification_flag", "mps_pruning_flag",
                "lps_pruning_flag", "mps_unification_flag", "lps_unification_flag",
                "mps_decomposition_performance_map_flag",
                "lps_decomposition_performance_map_flag")}}


def decode(path: str, weights: list[str]) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        stream = bytearray(f.read())
    data = nnc_core.coder.decode(stream, _model_info(weights), hls_stats={}, oob_dict={})
    nnc_core.approximator.rec(data)
    return {str(k): np.asarray(v) for k, v in data["parameters"].items()}


def maps(path: str) -> dict:
    compression.nnc_core.approximator.recompose_params = lambda info, data: data
    with open(path, "rb") as f:
        _, info = compression.decompress(bytearray(f.read()), return_model_information=True)

    def plain(x):
        if isinstance(x, dict):
            return {str(k): plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, (np.generic, np.ndarray)):
            return x.tolist()
        return x
    return plain(info["performance_maps"])


def patch_lps_flag() -> None:
    """Give every parsed LPS the ``lps_decomposition_performance_map_flag`` (0) that NNCodec
    2.1.3's decoder reads but its LPS syntax never parses."""
    hls = nnc_core.hls
    parse = hls.decode_nnr_unit_payload

    def patched(reader, unit):
        parse(reader, unit)
        if unit.get("nnr_unit_type") == hls.NnrUnitType.NNR_LPS:
            unit.setdefault("lps_decomposition_performance_map_flag", 0)
    hls.decode_nnr_unit_payload = patched
    nnc_core.coder.hls.decode_nnr_unit_payload = patched


def main(argv: list[str]) -> int:
    if "--patch-lps-flag" in argv:
        argv = [a for a in argv if a != "--patch-lps-flag"]
        patch_lps_flag()
    if len(argv) >= 3 and argv[0] == "decode":
        weights = []
        if "--weights" in argv:
            i = argv.index("--weights")
            weights = [w for w in argv[i + 1].split(",") if w]
            argv = argv[:i] + argv[i + 2:]
        np.savez(argv[2], **decode(argv[1], weights))
        return 0
    if len(argv) == 3 and argv[0] == "maps":
        with open(argv[2], "w") as f:
            json.dump(maps(argv[1]), f)
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
