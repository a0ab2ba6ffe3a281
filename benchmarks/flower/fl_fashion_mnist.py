"""Federated learning with NNR-coded updates on Flower: Fashion-MNIST, 10 clients, non-IID.

One Flower simulation (``flwr.simulation.run_simulation``, Ray backend) per working point,
all on the same seeded data split, initial model and client schedule:

* ``fedavg``: uncompressed FedAvg (float32 arrays both ways);
* ``nnr qp-32`` / ``qp-26`` / ``qp-22``: the same FedAvg wrapped in
  :class:`nnr.integrations.flower.NnrStrategy`, clients with ``nnr_mod``: the global model goes
  down as an update of each client's copy and each client's update comes back as its
  difference to that copy; DQ, TCA + HDSP, error feedback on the uplink.

Measured per round: test accuracy of the global model on all 10,000 test images, NNR stream
bytes each way per client, and (on the very same differences) the size of edition-1 style
coding: standalone profile-0 streams without TCA/HDSP. Results go to
``benchmarks/results/fl_fashion_mnist.json`` and ``.png``.

    nice -n 10 python benchmarks/flower/fl_fashion_mnist.py           # the full run
    python benchmarks/flower/fl_fashion_mnist.py --quick              # 3 clients, 3 rounds

Needs ``pip install 'flwr[simulation]' torch matplotlib`` and
``apt-get install dataset-fashion-mnist``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = REPO / "benchmarks" / "results"
#: What the simulation's worker processes need on their path: fl_task, and nnr when it is
#: run from a source tree without being installed.
WORKER_PATHS = [str(HERE)] + ([str(REPO / "src")] if importlib.util.find_spec("nnr") is None
                              else [])
sys.path[:0] = [p for p in WORKER_PATHS if p not in sys.path]

import numpy as np  # noqa: E402

import fl_task  # noqa: E402
from fl_task import RunLog, Task  # noqa: E402

#: (name, qp, nonweight qp) of the NNR working points, the same both ways; biases and other
#: 1-D tensors at half the weights' step.
WORKING_POINTS = [("nnr qp-32", -32, -36), ("nnr qp-26", -26, -30), ("nnr qp-22", -22, -26)]


def coding_for(qp: int, nonweight_qp: int):
    from nnr.integrations.flower import LinkCoding
    common = dict(qp=qp, nonweight_qp=nonweight_qp, dq=True, tca=True, hdsp=True)
    return LinkCoding(error_feedback=True, **common), LinkCoding(error_feedback=False, **common)


def run_one(task: Task, coding, grid=None) -> tuple[RunLog, float]:
    """One federated run; ``coding`` None (uncompressed) or (up, down) LinkCodings. By
    default on Flower's simulation runtime; ``grid(client_app, num_nodes)`` instead runs
    the same ServerApp and ClientApp in this process over the Grid it returns."""
    log = RunLog()
    if coding is None:
        def wrap(inner):
            return inner
    else:
        from nnr.integrations.flower import NnrStrategy

        def wrap(inner):
            return NnrStrategy(inner, up=coding[0], down=coding[1], measure_edition1=True)
    server_app = fl_task.make_server_app(task, wrap, log)
    client_app = fl_task.make_client_app(coded=coding is not None)
    t0 = time.time()
    if grid is not None:
        from flwr.app import Context, RecordDict
        server_app(grid(client_app, task.clients),
                   Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={}))
    else:
        _simulate(server_app, client_app, task.clients)
    if len(log.accuracy) != task.rounds + 1:
        raise RuntimeError(f"the run evaluated {len(log.accuracy)} of {task.rounds + 1} "
                           "models (see the Flower log above)")
    return log, time.time() - t0


def _simulate(server_app, client_app, clients: int) -> None:
    from flwr.simulation import run_simulation
    with _worker_path():
        run_simulation(server_app=server_app, client_app=client_app, num_supernodes=clients,
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                       "init_args": {"num_cpus": 2, "include_dashboard": False,
                                                     "log_to_driver": False}})


@contextlib.contextmanager
def _worker_path():
    """PYTHONPATH for the simulation's workers (they inherit the environment), restored
    afterwards."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(WORKER_PATHS + ([old] if old else []))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _per_round(rounds, attr: str) -> list[float]:
    return [float(np.mean(list(getattr(r, attr).values()))) if getattr(r, attr) else 0.0
            for r in rounds]


def summarize(name: str, log: RunLog, seconds: float, task: Task, model_bytes: int) -> dict:
    """One run's per-round series and totals."""
    out = {"name": name, "seconds": round(seconds, 1), "accuracy": log.accuracy,
           "loss": log.loss, "final_accuracy": log.accuracy[-1]}
    if getattr(log.strategy, "rounds", None) is None:         # uncompressed FedAvg
        per = [float(model_bytes)] * task.rounds
        out.update(up_bytes_per_client=per, down_bytes_per_client=per,
                   total_up_bytes=model_bytes * task.rounds * task.clients,
                   total_down_bytes=model_bytes * task.rounds * task.clients)
        return out
    rounds = log.strategy.rounds
    strat = log.strategy
    out.update(up=dataclasses.asdict(strat.up), down=dataclasses.asdict(strat.down))
    for key, attr in (("up_bytes_per_client", "up"), ("down_bytes_per_client", "down"),
                      ("up_edition1_bytes_per_client", "up_edition1"),
                      ("down_edition1_bytes_per_client", "down_edition1")):
        out[key] = _per_round(rounds, attr)
    for key, attr in (("total_up_bytes", "up"), ("total_down_bytes", "down"),
                      ("total_up_edition1_bytes", "up_edition1"),
                      ("total_down_edition1_bytes", "down_edition1")):
        out[key] = int(sum(sum(getattr(r, attr).values()) for r in rounds))
    return out


def headline(runs: list[dict], model_bytes: int, task: Task) -> list[dict]:
    """The figures the targets are about, per run."""
    base = runs[0]["final_accuracy"]
    rows = []
    for r in runs:
        n = task.rounds * task.clients
        row = {"name": r["name"], "final_accuracy": r["final_accuracy"],
               "accuracy_vs_fedavg": r["final_accuracy"] / base,
               "last5_accuracy_vs_fedavg": float(np.mean(r["accuracy"][-5:])
                                                 / np.mean(runs[0]["accuracy"][-5:])),
               "up_bytes_per_client_round": r["total_up_bytes"] / n,
               "down_bytes_per_client_round": r["total_down_bytes"] / n,
               "up_percent_of_float32": 100 * r["total_up_bytes"] / n / model_bytes,
               "down_percent_of_float32": 100 * r["total_down_bytes"] / n / model_bytes}
        if "total_up_edition1_bytes" in r:
            row["up_edition2_over_edition1"] = r["total_up_bytes"] / r["total_up_edition1_bytes"]
            row["down_edition2_over_edition1"] = (r["total_down_bytes"]
                                                  / r["total_down_edition1_bytes"])
            row["meets_targets"] = bool(row["up_percent_of_float32"] <= 1.0
                                        and row["accuracy_vs_fedavg"] >= 0.99
                                        and row["up_edition2_over_edition1"] < 1.0)
        rows.append(row)
    return rows


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.8))
    model_bytes = result["model"]["float32_bytes"]
    for r in result["runs"]:
        ax1.plot(range(len(r["accuracy"])), [100 * a for a in r["accuracy"]], label=r["name"])
        rounds = range(1, len(r["up_bytes_per_client"]) + 1)
        coded = "up_edition1_bytes_per_client" in r
        line, = ax2.plot(rounds, r["up_bytes_per_client"],
                         label=f"{r['name']} (edition 2)" if coded else f"{r['name']} (float32)")
        if coded:
            ax2.plot(rounds, r["up_edition1_bytes_per_client"], ls=":", color=line.get_color(),
                     label=f"{r['name']} (edition-1 style)")
        cum = np.cumsum([u + d for u, d in zip(r["up_bytes_per_client"],
                                               r["down_bytes_per_client"])])
        ax3.plot(cum, [100 * a for a in r["accuracy"][1:]], marker=".", ms=3, label=r["name"])
    ax2.axhline(0.01 * model_bytes, color="grey", ls="--", lw=0.8, label="1 % of the float32 model")
    ax1.set(xlabel="round", ylabel="test accuracy (%), 10k images", title="global model")
    ax2.set(xlabel="round", ylabel="bytes", yscale="log",
            title="client -> server update, per client and round")
    ax3.set(xlabel="bytes per client, both ways, cumulative", ylabel="test accuracy (%)",
            xscale="log", title="accuracy vs communication (rounds 1..)")
    for ax in (ax1, ax3):
        ax.legend(fontsize=7)
    ax2.legend(fontsize=7, loc="center right")
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
    t = result["settings"]
    fig.suptitle(f"Flower FedAvg, Fashion-MNIST, {t['clients']} clients, Dirichlet "
                 f"alpha={t['alpha']}, {t['local_steps']} local steps per round; "
                 "nnr-coded updates both ways")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def environment() -> dict:
    import flwr
    import torch

    import nnr
    return {"python": platform.python_version(), "flwr": flwr.__version__,
            "torch": torch.__version__, "nnr": nnr.__version__, "cpus": os.cpu_count(),
            "machine": platform.machine()}


def run(task: Task, points=WORKING_POINTS, progress=print) -> dict:
    """All runs on ``task``: uncompressed FedAvg first, then each NNR working point."""
    model = fl_task.build_model(task.width)
    params = sum(int(p.numel()) for p in model.state_dict().values())
    model_bytes = 4 * params
    runs = []
    plan = [("fedavg", None)] + [(name, coding_for(qp, nw)) for name, qp, nw in points]
    for name, coding in plan:
        log, seconds = run_one(task, coding)
        runs.append(summarize(name, log, seconds, task, model_bytes))
        progress(f"{name}: final accuracy {log.accuracy[-1]:.4f}, {seconds:.0f} s")
    return {"settings": task.config(), "model": {"parameters": params,
                                                 "float32_bytes": model_bytes},
            "environment": environment(), "runs": runs,
            "headline": headline(runs, model_bytes, task)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 clients, 3 rounds, one working point")
    p.add_argument("--clients", type=int)
    p.add_argument("--rounds", type=int)
    p.add_argument("--out", type=Path, default=RESULTS / "fl_fashion_mnist.json")
    p.add_argument("--replot", action="store_true",
                   help="recompute the headline and the plot from --out, run nothing")
    args = p.parse_args(argv)
    if args.replot:
        result = json.loads(args.out.read_text())
        result["headline"] = headline(result["runs"], result["model"]["float32_bytes"],
                                      Task(**result["settings"]))
        return _write(result, args.out)
    task = Task()
    points = WORKING_POINTS
    if args.quick:
        task = dataclasses.replace(task, clients=3, rounds=3, local_steps=10)
        points = WORKING_POINTS[:1]
    task = dataclasses.replace(task, **{k: v for k, v in (("clients", args.clients),
                                                          ("rounds", args.rounds)) if v})
    if not fl_task.data_available(task.data_dir):
        print(f"Fashion-MNIST not found in {task.data_dir} "
              "(apt-get install dataset-fashion-mnist)", file=sys.stderr)
        return 1
    logging.getLogger("flwr").setLevel(logging.WARNING)
    result = run(task, points, progress=lambda s: print(s, file=sys.stderr, flush=True))
    return _write(result, args.out)


def _write(result: dict, out: Path) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, out.with_suffix(".png"))
    for row in result["headline"]:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
