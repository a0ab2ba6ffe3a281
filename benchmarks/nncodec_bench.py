"""Time NNCodec 2.1.3 on one .npz model (run by the NNCodec peer environment's python).

    nncodec_bench.py encode MODEL.npz QP DQ OUT.nnc  ->  JSON: seconds, bytes, peak_rss_mb
    nncodec_bench.py decode IN.nnc                   ->  JSON: seconds, peak_rss_mb

Drives NNCodec's numpy-only core the way its ``nnc.compress`` does for a dict of tensors (scan
order 0, qp_density 2, nonweight_qp -75, param_opt on); imports nothing from nnr.
"""
import json
import sys
import time

import numpy as np
from nncodec import nnc_core


def _model_info():
    flags = ["mps_sparsification_flag", "lps_sparsification_flag", "mps_pruning_flag",
             "lps_pruning_flag", "mps_unification_flag", "lps_unification_flag",
             "mps_decomposition_performance_map_flag", "lps_decomposition_performance_map_flag"]
    return {"parameter_type": {}, "parameter_dimensions": {}, "parameter_index": {},
            "block_identifier": {}, "topology_storage_format": None,
            "topology_compression_format": None, "performance_maps": {"mps": {}, "lps": {}},
            "performance_map_flags": {k: {} for k in flags}}


def encode(params, qp, dq):
    mdl = nnc_core.nnr_model.NNRModel(params)
    ad = nnc_core.approximator.init_approx_data(params, mdl.model_info, qp_density=2, scan_order=0)
    ai = nnc_core.approximator.ApproxInfo(ad, mdl.model_info, "uniform", 0, qp, False, not dq, 10,
                                          0, nonweight_qp=-75)
    ei = {"cabac_unary_length_minus1": 10, "param_opt_flag": True, "general_profile_idc": 1,
          "node_id_present_flag": 1, "device_id": 0, "mps_parent_signalling_enabled_flag": 0,
          "parent_node_id_present_flag": 0, "row_skip_enabled_flag": 0}
    ade = nnc_core.approximator.approx(ai.approx_info, mdl.model_info, ad, ei)
    bs, _ = nnc_core.coder.encode(ei, mdl.model_info, ade)
    return bytes(bs)


def decode(data):
    a = nnc_core.coder.decode(bytearray(data), _model_info(), hls_stats={})
    nnc_core.approximator.rec(a)
    return a["parameters"]


def main():
    if sys.argv[1] == "encode":
        params = {k: v for k, v in np.load(sys.argv[2]).items()}
        qp, dq = int(sys.argv[3]), bool(int(sys.argv[4]))
        c0, t0 = time.process_time(), time.perf_counter()
        data = encode(params, qp, dq)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - c0
        with open(sys.argv[5], "wb") as f:
            f.write(data)
        result = {"seconds": seconds, "cpu_seconds": cpu, "bytes": len(data)}
    else:
        with open(sys.argv[2], "rb") as f:
            data = f.read()
        c0, t0 = time.process_time(), time.perf_counter()
        decode(data)
        result = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
    # VmHWM, not ru_maxrss: on Linux ru_maxrss keeps the parent's peak across fork + exec
    with open("/proc/self/status") as f:
        hwm = next(line for line in f if line.startswith("VmHWM:")).split()[1]
    result["peak_rss_mb"] = int(hwm) / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
