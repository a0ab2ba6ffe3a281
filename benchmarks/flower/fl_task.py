"""The federated task of ``fl_fashion_mnist.py``: Fashion-MNIST (Debian's
``dataset-fashion-mnist``), a seeded non-IID Dirichlet split, a small CNN, local SGD steps and
the full-test-set evaluation, plus the Flower ClientApp and ServerApp built on them.

Kept in its own importable module so that Flower's simulation workers (separate processes)
import it by name instead of receiving pickled copies of the functions and their caches.
"""
from __future__ import annotations

import functools
import gzip
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DATA_DIR = Path(os.environ.get("NNR_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
MEAN, STD = 0.2860, 0.3530           # Fashion-MNIST training-set pixel statistics (of x / 255)


@dataclass(frozen=True)
class Task:
    """One federated run's data, model and training settings (sent to the clients in the
    train ConfigRecord, so a worker process rebuilds the same split)."""

    clients: int = 10
    rounds: int = 30
    alpha: float = 0.3               # Dirichlet concentration of the label split
    local_steps: int = 25
    batch: int = 32
    lr: float = 0.05
    seed: int = 0
    train_limit: int = 0             # 0: all 60,000 training images
    width: int = 16                  # channels of the second conv layer (first: half)
    data_dir: str = str(DATA_DIR)

    def config(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_config(cls, config: Any) -> "Task":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: config[k] for k in config.keys() if k in names})


# -- data -----------------------------------------------------------------------------------------

#: ``data_dir`` value that selects a small synthetic stand-in (for tests without the package).
SYNTHETIC = "synthetic"


def data_available(data_dir: str | Path = DATA_DIR) -> bool:
    return str(data_dir) == SYNTHETIC or (Path(data_dir) / "t10k-images-idx3-ubyte.gz").exists()


def synthetic_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Ten classes of 28x28 images: a fixed smooth pattern per class, scaled and noisy
    (6,000 training and 2,000 test images; deterministic)."""
    protos = np.random.default_rng(1234).standard_normal((10, 1, 7, 7)).repeat(4, 2).repeat(4, 3)
    n = 6000 if split == "train" else 2000
    rng = np.random.default_rng(0 if split == "train" else 1)
    y = rng.integers(0, 10, n)
    x = protos[y] * rng.uniform(0.5, 1.5, (n, 1, 1, 1)) + rng.standard_normal((n, 1, 28, 28)) * 1.5
    return x.astype(np.float32), y.astype(np.int64)


@functools.lru_cache(maxsize=4)
def load_split(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``split`` 'train' or 't10k' -> (float32 images (N, 1, 28, 28), normalised; int64
    labels (N,)). ``data_dir`` "synthetic": :func:`synthetic_split`."""
    if data_dir == SYNTHETIC:
        return synthetic_split(split)
    d = Path(data_dir)
    with gzip.open(d / f"{split}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(d / f"{split}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return ((x.astype(np.float32) / 255.0 - MEAN) / STD), y.astype(np.int64)


def dirichlet_split(labels: np.ndarray, clients: int, alpha: float, seed: int,
                    min_size: int = 20) -> list[np.ndarray]:
    """Indices of each client's shard: per class, Dirichlet(alpha) proportions over the
    clients (redrawn until every client has ``min_size`` images). Deterministic in seed."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(100):
        shards: list[list[int]] = [[] for _ in range(clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet([alpha] * clients)) * len(idx)).astype(int)[:-1]
            for shard, part in zip(shards, np.split(idx, cuts)):
                shard.extend(part.tolist())
        if min(len(s) for s in shards) >= min_size:
            return [np.sort(np.asarray(s, dtype=np.int64)) for s in shards]
    raise RuntimeError("no Dirichlet split with every client >= min_size images")


@functools.lru_cache(maxsize=4)
def client_shard(task: Task, partition: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_split(task.data_dir, "train")
    if task.train_limit:
        x, y = x[:task.train_limit], y[:task.train_limit]
    idx = dirichlet_split(y, task.clients, task.alpha, task.seed)[partition]
    return x[idx], y[idx]


# -- model ----------------------------------------------------------------------------------------

def build_model(width: int = 16):
    """A small CNN: two stride-2 3x3 convolutions (width/2 and width channels), a 64-unit
    hidden layer and the classifier (52,138 parameters at width 16)."""
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, width // 2, 3, stride=2, padding=1)
            self.conv2 = nn.Conv2d(width // 2, width, 3, stride=2, padding=1)
            self.fc1 = nn.Linear(width * 7 * 7, 64)
            self.fc2 = nn.Linear(64, 10)

        def forward(self, x):
            x = self.conv2(self.conv1(x).relu()).relu()
            return self.fc2(self.fc1(x.flatten(1)).relu())

    return Net()


def local_train(model, x: np.ndarray, y: np.ndarray, task: Task, seed: tuple[int, ...]
                ) -> float:
    """``task.local_steps`` SGD steps on random mini-batches of the shard; mean loss."""
    import torch
    import torch.nn.functional as F
    torch.manual_seed(int(np.random.default_rng(seed).integers(1 << 31)))
    rng = np.random.default_rng(seed)
    opt = torch.optim.SGD(model.parameters(), lr=task.lr)
    model.train()
    losses = []
    # Training must not depend on the caller's grad mode (an evaluation run in the same
    # process may have switched autograd off globally).
    with torch.enable_grad():
        for _ in range(task.local_steps):
            idx = rng.choice(len(y), size=min(task.batch, len(y)), replace=False)
            opt.zero_grad()
            loss = F.cross_entropy(model(torch.from_numpy(x[idx])), torch.from_numpy(y[idx]))
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return float(np.mean(losses))


def evaluate(model, data_dir: str) -> tuple[float, float]:
    """(top-1 accuracy, mean loss) on the test set (Fashion-MNIST: all 10,000 images)."""
    import torch
    import torch.nn.functional as F
    x, y = load_split(data_dir, "t10k")
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(y), 2500):
            out = model(torch.from_numpy(x[i:i + 2500]))
            t = torch.from_numpy(y[i:i + 2500])
            loss += float(F.cross_entropy(out, t, reduction="sum"))
            correct += int((out.argmax(1) == t).sum())
    return correct / len(y), loss / len(y)


# -- Flower apps ----------------------------------------------------------------------------------

def make_client_app(coded: bool):
    """The ClientApp: local training on this node's shard; with ``coded`` the nnr mod."""
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    mods = []
    if coded:
        from nnr.integrations.flower import nnr_mod
        mods.append(nnr_mod)
    app = ClientApp(mods=mods)

    @app.train()
    def train(msg: Message, context: Any) -> Message:
        import torch
        torch.set_num_threads(1)
        config = msg.content["config"]
        task = Task.from_config(config)
        partition = int(context.node_config["partition-id"])
        x, y = client_shard(task, partition)
        model = build_model(task.width)
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        loss = local_train(model, x, y, task, (task.seed, partition, int(config["server-round"])))
        reply = RecordDict({"arrays": ArrayRecord(model.state_dict()),
                            "metrics": MetricRecord({"num-examples": len(y), "train-loss": loss})})
        return Message(reply, reply_to=msg)

    return app


@dataclass
class RunLog:
    """What the ServerApp of one run records (read by the benchmark after the run)."""

    accuracy: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)         # when each evaluation ended
    eval_seconds: float = 0.0
    strategy: Any = None


def make_server_app(task: Task, wrap, log: RunLog):
    """The ServerApp: FedAvg over all clients each round (wrapped by ``wrap``, e.g. in an
    NnrStrategy), centralised evaluation on the full test set before and after each round."""
    import torch
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
    from flwr.serverapp import ServerApp
    from flwr.serverapp.strategy import FedAvg

    app = ServerApp()

    def central_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        t0 = time.perf_counter()
        model = build_model(task.width)
        model.load_state_dict(arrays.to_torch_state_dict())
        acc, loss = evaluate(model, task.data_dir)
        log.accuracy.append(acc)
        log.loss.append(loss)
        log.eval_seconds += time.perf_counter() - t0
        log.times.append(time.time())
        return MetricRecord({"accuracy": acc, "loss": loss})

    @app.main()
    def main(grid: Any, context: Any) -> None:
        logging.getLogger("flwr").setLevel(logging.WARNING)
        torch.set_num_threads(1)
        torch.manual_seed(task.seed)
        initial = ArrayRecord(build_model(task.width).state_dict())
        inner = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=task.clients,
                       min_available_nodes=task.clients)
        log.strategy = wrap(inner)
        log.strategy.start(grid=grid, initial_arrays=initial, num_rounds=task.rounds,
                           train_config=ConfigRecord(task.config()),
                           evaluate_fn=central_evaluate)

    return app
