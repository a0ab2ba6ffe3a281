"""Rebuild examples/minilm_slice.npz, the small real model the README encodes.

The tensors are the first two transformer layers of all-MiniLM-L6-v2 (Apache-2.0), every 2-D
weight cut to its first 16 rows: 32 float32 tensors, 482 KB. They are the source tensors of the
conformance vector p1_multi32_minilm (tests/vectors/), so this script needs only numpy:

    python examples/make_example.py
"""
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "tests" / "vectors" / "p1_multi32_minilm.source.npz"
TARGET = HERE / "minilm_slice.npz"


def main() -> None:
    with np.load(SOURCE, allow_pickle=False) as npz:
        tensors = {name: npz[name] for name in npz.files}
    np.savez(TARGET, **tensors)
    total = sum(t.nbytes for t in tensors.values())
    print(f"wrote {TARGET.name}: {len(tensors)} tensors, {total} bytes of float32")


if __name__ == "__main__":
    main()
