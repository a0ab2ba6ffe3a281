"""Train the Fashion-MNIST CNN of ``fashion_cnn.py`` once and write ``fashion_cnn.npz``.

    nice -n 10 python benchmarks/eval/train_fashion_cnn.py [--epochs 2] [--out PATH]

Reproducible: fixed seeds (torch and the numpy shuffle), deterministic algorithms, one CPU thread,
Adam (lr 1e-3, halved for the last epoch), batch 128, no augmentation, the full 60k training
images. Writes the float32 state_dict (without ``num_batches_tracked``) and prints the test
accuracy; a sidecar ``fashion_cnn.json`` records how the weights were made.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.eval import fashion_cnn as fc  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: fastest for this small net on a shared machine)")
    ap.add_argument("--out", type=Path, default=fc.WEIGHTS)
    args = ap.parse_args()

    import torch
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)
    rng = np.random.RandomState(args.seed)

    xtr, ytr = fc.read_split("train")
    xte, yte = fc.read_split("t10k")
    xtr_t = torch.from_numpy(fc.normalise(xtr))
    ytr_t = torch.from_numpy(ytr.astype(np.int64))
    xte_t = torch.from_numpy(fc.normalise(xte))

    net = fc.build_module()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    log = []
    for epoch in range(args.epochs):
        if epoch == args.epochs - 1 and args.epochs > 1:
            for g in opt.param_groups:
                g["lr"] = 5e-4
        net.train()
        perm = rng.permutation(len(xtr))
        total = 0.0
        for i in range(0, len(perm), 128):
            idx = torch.from_numpy(perm[i:i + 128])
            opt.zero_grad()
            loss = loss_fn(net(xtr_t[idx]), ytr_t[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        net.eval()
        with torch.no_grad():
            acc = float((net(xte_t).argmax(1).numpy() == yte).mean())
        log.append({"epoch": epoch + 1, "train_loss": total / len(perm), "test_top1": acc,
                    "seconds": time.perf_counter() - t0})
        print(json.dumps(log[-1]), flush=True)

    sd = {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()
          if k in fc.TENSOR_NAMES}
    assert sorted(sd) == sorted(fc.TENSOR_NAMES)
    np.savez(args.out, **sd)
    meta = {"script": "benchmarks/eval/train_fashion_cnn.py", "epochs": args.epochs,
            "seed": args.seed, "threads": args.threads, "optimizer": "Adam lr 1e-3 (5e-4 last epoch), batch 128",
            "torch": torch.__version__, "numpy": np.__version__, "log": log,
            "parameters": int(sum(v.size for v in sd.values()))}
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes), test top-1 {log[-1]['test_top1']:.4f}")


if __name__ == "__main__":
    main()
