"""A small CNN trained once on Fashion-MNIST (Debian ``dataset-fashion-mnist``), scored on the
full 10,000-image test set.

The weights were trained by ``train_fashion_cnn.py`` (fixed seeds, CPU) and are committed beside
this file as ``fashion_cnn.npz`` (float32 state_dict: conv 16, conv 32, fc 128, fc 10 with batch
norm; 206,970 trainable parameters plus 96 batch-norm statistics; ``fashion_cnn.json`` records
the training run). The forward pass is functional, driven by the tensor dict, so ``evaluate``
runs exactly the decoded tensors.

Metrics: ``top1`` (accuracy on the 10k test images), ``agreement`` (top-1 agreement with the
uncompressed model), ``kl`` (mean KL divergence of the softmax outputs from the uncompressed
model's) and ``logit_mse``.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from .common import Evaluator, as_torch, classifier_metrics, missing_modules, model_loader

NAME = "fashion_cnn"
TITLE = "Fashion-MNIST CNN (trained here), 10k test images"
DATA_DIR = Path(os.environ.get("NNR_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
WEIGHTS = Path(__file__).with_name("fashion_cnn.npz")
MEAN, STD = 0.2860, 0.3530          # Fashion-MNIST training-set pixel statistics (of x / 255)
BN_EPS = 1e-5
TOLERANCE = ("top-1 accuracy on the 10k test images at most 0.1 percentage point below the "
             "uncompressed model's, and top-1 agreement with it >= 99 %")
INSTALL = "pip: torch; apt: dataset-fashion-mnist"


def unavailable() -> str | None:
    """None when the model can be loaded, else the reason it cannot."""
    if missing_modules("torch"):
        return "torch is not installed (pip install torch)"
    if not (DATA_DIR / "t10k-images-idx3-ubyte.gz").exists():
        return f"Fashion-MNIST not found in {DATA_DIR} (apt-get install dataset-fashion-mnist)"
    if not WEIGHTS.exists():
        return f"{WEIGHTS} is missing (run benchmarks/eval/train_fashion_cnn.py)"
    return None


def read_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``split`` 'train' or 't10k' -> (uint8 images (N, 28, 28), uint8 labels (N,))."""
    with gzip.open(DATA_DIR / f"{split}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(DATA_DIR / f"{split}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return x, y


def normalise(x_uint8: np.ndarray) -> np.ndarray:
    return ((x_uint8.astype(np.float32) / 255.0 - MEAN) / STD)[:, None]


def build_module():
    """The architecture as a torch module (used for training); state_dict names equal the
    tensor names that :func:`forward` reads."""
    import torch.nn as nn

    class FashionCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(16, eps=BN_EPS)
            self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(32, eps=BN_EPS)
            self.fc1 = nn.Linear(32 * 7 * 7, 128)
            self.fc2 = nn.Linear(128, 10)
            self.drop = nn.Dropout(0.25)

        def forward(self, x):
            import torch.nn.functional as F
            x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
            x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
            x = self.drop(F.relu(self.fc1(x.flatten(1))))
            return self.fc2(x)

    return FashionCNN()


TENSOR_NAMES = ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                "conv2.weight", "bn2.weight", "bn2.bias", "bn2.running_mean", "bn2.running_var",
                "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def forward(w: dict, x, batch: int = 500):
    """Inference from a dict of torch tensors (names as in :data:`TENSOR_NAMES`)."""
    import torch
    import torch.nn.functional as F

    def bn(h, p):
        return F.batch_norm(h, w[p + ".running_mean"], w[p + ".running_var"], w[p + ".weight"],
                            w[p + ".bias"], False, 0.0, BN_EPS)

    outs = []
    for i in range(0, x.shape[0], batch):
        h = x[i:i + batch]
        h = F.max_pool2d(F.relu(bn(F.conv2d(h, w["conv1.weight"], padding=1), "bn1")), 2)
        h = F.max_pool2d(F.relu(bn(F.conv2d(h, w["conv2.weight"], padding=1), "bn2")), 2)
        h = F.relu(F.linear(h.flatten(1), w["fc1.weight"], w["fc1.bias"]))
        outs.append(F.linear(h, w["fc2.weight"], w["fc2.bias"]))
    return torch.cat(outs).numpy()


def _accept(m, ref) -> bool:
    return m["top1"] >= ref["top1"] - 0.001 - 1e-9 and m["agreement"] >= 0.99


def _build(torch):
    with np.load(WEIGHTS) as z:
        tensors = {k: np.asarray(z[k], np.float32) for k in TENSOR_NAMES}
    x, y = read_split("t10k")
    x = torch.from_numpy(normalise(x))
    labels = y.astype(np.int64)
    ref_logits = forward(as_torch(tensors, TENSOR_NAMES), x)

    def run(t):
        return classifier_metrics(forward(as_torch(t, TENSOR_NAMES), x), labels, ref_logits)

    ev = Evaluator(NAME, run, _accept, TOLERANCE, primary="top1")
    return tensors, ev


load = model_loader(unavailable, _build)
