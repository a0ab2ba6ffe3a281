"""A tiny model for the reduction tests, with a numpy forward pass (exact checks) and an
optional torch task loss (fine-tuning checks), plus the NNCodec peer fixture.

Model: x (N, 3, 4) -> conv1 (1x1, 8) -> bn1 -> relu -> conv2 (1x1, 6) -> bn2 -> relu ->
flatten (24) -> fc1 (5) -> relu -> fc2 (3). Names follow PyTorch's state_dict.
"""
from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conformance.conftest import nncodec  # noqa: F401  (the NNCodec peer fixture)

EPS = 1e-5
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed; the "
                                 "fine-tuning tools need it (pip install torch)")


def make_model(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = np.float32
    t = {"conv1.weight": rng.normal(0, 0.5, (8, 3, 1, 1)).astype(f)}
    t.update(_bn("bn1", 8, rng))
    t["conv2.weight"] = rng.normal(0, 0.4, (6, 8, 1, 1)).astype(f)
    t.update(_bn("bn2", 6, rng))
    t["fc1.weight"] = rng.normal(0, 0.3, (5, 24)).astype(f)
    t["fc1.bias"] = rng.normal(0, 0.1, 5).astype(f)
    t["fc2.weight"] = rng.normal(0, 0.4, (3, 5)).astype(f)
    t["fc2.bias"] = rng.normal(0, 0.1, 3).astype(f)
    return t


def _bn(prefix: str, c: int, rng) -> dict[str, np.ndarray]:
    f = np.float32
    return {f"{prefix}.weight": rng.uniform(0.5, 1.5, c).astype(f),
            f"{prefix}.bias": rng.normal(0, 0.2, c).astype(f),
            f"{prefix}.running_mean": rng.normal(0, 0.3, c).astype(f),
            f"{prefix}.running_var": rng.uniform(0.5, 2.0, c).astype(f)}


def inputs(n: int = 64, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, 4)).astype(np.float32)


def forward(t, x: np.ndarray) -> np.ndarray:
    """numpy forward pass (float64)."""
    def bn(h, p):
        scale = t[p + ".weight"] / np.sqrt(t[p + ".running_var"].astype(np.float64) + EPS)
        return (h - t[p + ".running_mean"][None, :, None]) * scale[None, :, None] \
            + t[p + ".bias"][None, :, None]

    h = np.einsum("oc,ncs->nos", t["conv1.weight"][:, :, 0, 0].astype(np.float64), x)
    h = np.maximum(bn(h, "bn1"), 0)
    h = np.einsum("oc,ncs->nos", t["conv2.weight"][:, :, 0, 0].astype(np.float64), h)
    h = np.maximum(bn(h, "bn2"), 0).reshape(len(x), -1)
    h = np.maximum(h @ t["fc1.weight"].T + t["fc1.bias"], 0)
    return h @ t["fc2.weight"].T + t["fc2.bias"]


def torch_forward(t, x):
    import torch

    def bn(h, p):
        scale = t[p + ".weight"] / torch.sqrt(t[p + ".running_var"] + EPS)
        return (h - t[p + ".running_mean"][None, :, None]) * scale[None, :, None] \
            + t[p + ".bias"][None, :, None]

    h = torch.einsum("oc,ncs->nos", t["conv1.weight"][:, :, 0, 0], x)
    h = torch.relu(bn(h, "bn1"))
    h = torch.einsum("oc,ncs->nos", t["conv2.weight"][:, :, 0, 0], h)
    h = torch.relu(bn(h, "bn2")).reshape(x.shape[0], -1)
    h = torch.relu(h @ t["fc1.weight"].T + t["fc1.bias"])
    return h @ t["fc2.weight"].T + t["fc2.bias"]


def task_loss(reference: dict[str, np.ndarray], n: int = 256, batch: int = 64):
    """A distillation task: match the reference model's outputs on random inputs (mean
    squared error over mini-batches drawn in turn). Returns loss_fn(tensors) -> torch scalar."""
    import torch
    x = inputs(n, seed=7)
    target = torch.from_numpy(forward(reference, x).astype(np.float32))
    xt = torch.from_numpy(x)
    state = {"i": 0}

    def loss_fn(t):
        i = state["i"]
        state["i"] = (i + batch) % n
        return ((torch_forward(t, xt[i:i + batch]) - target[i:i + batch]) ** 2).mean()
    return loss_fn


def full_loss(reference, tensors) -> float:
    x = inputs(256, seed=7)
    return float(np.mean((forward(tensors, x) - forward(reference, x)) ** 2))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors: torch threads only add overhead (and contention on a shared machine)."""
    if not HAS_TORCH:
        yield
        return
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def model() -> dict[str, np.ndarray]:
    return make_model()


def top1_agreement(reference: dict[str, np.ndarray]):
    """An evaluate(tensors) -> {"top1": agreement with ``reference`` on 200 inputs}."""
    x = inputs(200)
    ref = forward(reference, x).argmax(1)
    return lambda t: {"top1": float((forward(t, x).argmax(1) == ref).mean())}


DC_DRIVER = Path(__file__).with_name("nncodec_dc_driver.py")


def run_dc_driver(peer, *args) -> subprocess.CompletedProcess:
    """tests/reduction/nncodec_dc_driver.py with the python of ``peer`` (the nncodec fixture)."""
    return subprocess.run([str(peer.python), str(DC_DRIVER), *map(str, args)],
                          capture_output=True, text=True, timeout=600)
