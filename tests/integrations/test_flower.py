"""nnr.integrations.flower: the client mod and the strategy wrapper on Flower's Message API.

Most tests drive the real ServerApp loop (``Strategy.start``), the real ClientApp with its mod
and the wrapper through an in-process Grid (tests/integrations/local_grid.py); the last one is
a short federated Fashion-MNIST run on Flower's simulation runtime (Ray), the benchmark
``benchmarks/flower/fl_fashion_mnist.py`` in small. Skipped, with the reason, when Flower
(or, for the last one, torch) is not installed.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr", reason="Flower is not installed (pip install 'nnr[flower]')")
pytest.importorskip("flwr.serverapp.strategy",
                    reason="this Flower has no Message API strategies (needs flwr>=1.21)")

from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp.strategy import FedAdam, FedAvg  # noqa: E402

from nnr.integrations.flower import LinkCoding, NnrStrategy, RoundBytes, nnr_mod  # noqa: E402
from tests.integrations.local_grid import LocalGrid  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NODES = 3
RNG = np.random.default_rng(0)
TARGET = {"w": (RNG.standard_normal((16, 24)) * 0.1).astype(np.float32),
          "b": (RNG.standard_normal(16) * 0.1).astype(np.float32)}


def _initial(with_int: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    out = {"w": (rng.standard_normal((16, 24)) * 0.1).astype(np.float32),
           "b": np.zeros(16, np.float32)}
    if with_int:
        out["steps"] = np.array(0, np.int64)
    return out


def _record(tensors) -> ArrayRecord:
    return ArrayRecord({k: Array(np.asarray(v)) for k, v in tensors.items()})


def _toy_app(mods, received: list | None = None) -> ClientApp:
    """Each client moves the model 30 % towards a target, plus its own small noise, and
    counts its local steps in an int64 scalar."""
    app = ClientApp(mods=mods)

    @app.train()
    def train(msg: Message, context) -> Message:
        arrays = {k: v.numpy() for k, v in msg.content["arrays"].items()}
        if received is not None:
            received.append(arrays)
        rnd = int(msg.content["config"]["server-round"])
        rng = np.random.default_rng([int(context.node_config["partition-id"]), rnd])
        out = {k: (arrays[k] + 0.3 * (TARGET[k] - arrays[k])
                   + rng.standard_normal(TARGET[k].shape) * 0.002).astype(np.float32)
               for k in TARGET}
        if "steps" in arrays:
            out["steps"] = arrays["steps"] + 10
        reply = RecordDict({"arrays": _record(out),
                            "metrics": MetricRecord({"num-examples": 10 + rnd})})
        return Message(reply, reply_to=msg)

    return app


def _run(strategy, app, rounds: int = 4, on_round=None, with_int: bool = True):
    grid = LocalGrid(app, NODES)

    def after(server_round, arrays):
        if on_round is not None:
            on_round(server_round, grid)
        return None

    result = strategy.start(grid=grid, initial_arrays=_record(_initial(with_int)),
                            num_rounds=rounds, train_config=ConfigRecord(),
                            evaluate_fn=after)
    return result, grid


def _fedavg():
    return FedAvg(fraction_evaluate=0.0, min_train_nodes=NODES, min_available_nodes=NODES)


def _arrays(result) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in result.arrays.items()}


def test_coded_run_tracks_uncoded_fedavg_and_counts_bytes():
    plain, _ = _run(_fedavg(), _toy_app([]))
    received: list = []
    strategy = NnrStrategy(_fedavg(), up=LinkCoding(qp=-40), down=LinkCoding(qp=-40))
    coded, grid = _run(strategy, _toy_app([nnr_mod], received))
    a, b = _arrays(plain), _arrays(coded)
    # (FedAvg itself averages the int64 counter into a float)
    assert b["steps"].shape == () and b["steps"].dtype == a["steps"].dtype and b["steps"] == 40
    for k in TARGET:
        assert b[k].dtype == np.float32 and b[k].shape == a[k].shape
        assert np.abs(a[k] - b[k]).max() < 4 * 2.0 ** (-40 / 4)
    # the ClientApp saw plain arrays, in the server's dtypes and shapes
    assert all(r["steps"].shape == () and r["w"].dtype == np.float32 for r in received)
    # what went over the wire: NNR streams only, no ArrayRecord
    assert all(not c.array_records and "nnr.down" in c for _, c in grid.wire)
    assert [r.round for r in strategy.rounds] == [1, 2, 3, 4]
    for r in strategy.rounds:
        assert isinstance(r, RoundBytes) and len(r.down) == len(r.up) == NODES
        assert r.float32_bytes == 4 * (16 * 24 + 16 + 1)
        metrics = coded.train_metrics_clientapp[r.round]
        assert metrics["nnr.up.bytes"] == sum(r.up.values())
        assert metrics["nnr.down.bytes_per_client"] == pytest.approx(np.mean(list(r.down.values())))
    assert all(_seqs(grid, node) == [0, 1, 2, 3] for node in grid.contexts)  # one chain each
    assert max(strategy.rounds[-1].up.values()) < strategy.rounds[-1].float32_bytes / 2


def test_inner_strategy_fedadam_keeps_working():
    plain, _ = _run(FedAdam(fraction_evaluate=0.0, min_train_nodes=NODES,
                            min_available_nodes=NODES), _toy_app([]), with_int=False)
    strategy = NnrStrategy(FedAdam(fraction_evaluate=0.0, min_train_nodes=NODES,
                                   min_available_nodes=NODES),
                           up=LinkCoding(qp=-44), down=LinkCoding(qp=-44))
    coded, _ = _run(strategy, _toy_app([nnr_mod]), with_int=False)
    a, b = _arrays(plain), _arrays(coded)
    for k in TARGET:
        assert np.abs(a[k] - b[k]).max() < 0.02 * np.abs(a[k]).max()


def test_uncoded_server_passes_through_the_mod():
    plain, _ = _run(_fedavg(), _toy_app([]))
    modded, _ = _run(_fedavg(), _toy_app([nnr_mod]))
    for k, v in _arrays(plain).items():     # FedAvg samples nodes in random order: float sums
        np.testing.assert_allclose(v, _arrays(modded)[k], rtol=1e-6, atol=1e-7)


def _seqs(grid: LocalGrid, node: int) -> list[int]:
    """The chain positions of the streams that reached ``node``."""
    return [int(c["nnr.down"]["seq"]) for n, c in grid.wire if n == node]


def test_client_that_loses_its_state_gets_a_new_chain():
    strategy = NnrStrategy(_fedavg(), up=LinkCoding(qp=-36))
    victim: list[int] = []

    def on_round(server_round, grid):
        if server_round == 2:
            victim.append(sorted(grid.contexts)[0])
            grid.forget.add(victim[0])           # a restarted client: state gone

    result, grid = _run(strategy, _toy_app([nnr_mod]), rounds=5, on_round=on_round)
    node = victim[0]
    r3, r4 = strategy.rounds[2], strategy.rounds[3]
    assert node in r3.down and node not in r3.up           # it replied with an error
    assert node in r4.up
    assert _seqs(grid, node) == [0, 1, 2, 0, 1]             # round 4 started a new chain
    assert round(float(_arrays(result)["steps"])) == 50


def test_client_that_does_not_answer_gets_a_new_chain():
    strategy = NnrStrategy(_fedavg(), up=LinkCoding(qp=-36))
    dropped: list[int] = []

    def on_round(server_round, grid):
        if server_round == 1:
            dropped.append(sorted(grid.contexts)[1])
            grid.drop.add(dropped[0])
        elif server_round == 2:
            grid.drop.clear()

    _, grid = _run(strategy, _toy_app([nnr_mod]), rounds=4, on_round=on_round)
    node = dropped[0]
    assert node not in strategy.rounds[1].up and node in strategy.rounds[2].up
    assert _seqs(grid, node) == [0, 0, 1]                   # lost in round 2: new chain in 3


def test_edition1_sizes_are_measured_on_the_same_differences():
    strategy = NnrStrategy(_fedavg(), up=LinkCoding(qp=-36), down=LinkCoding(qp=-36),
                           measure_edition1=True)
    result, _ = _run(strategy, _toy_app([nnr_mod]), rounds=3)
    for r in strategy.rounds:
        assert r.up_edition1.keys() == r.up.keys() and r.down_edition1.keys() == r.down.keys()
        assert all(v > 0 for v in r.up_edition1.values())
        assert result.train_metrics_clientapp[r.round]["nnr.up.edition1_bytes"] == \
            sum(r.up_edition1.values())


def test_link_coding_validates_and_travels_as_json():
    coding = LinkCoding(qp=-30, nonweight_qp=-40, predictive=0.5, options={"row_skip": True})
    assert LinkCoding.from_json(coding.to_json()) == coding
    from nnr.errors import ConfigError
    with pytest.raises(ConfigError):
        LinkCoding(qp=999)
    with pytest.raises(ConfigError):
        LinkCoding(options={"no_such_option": 1})
    with pytest.raises(ConfigError):
        LinkCoding.from_json('{"qp": -30, "colour": 1}')


def _benchmark_module():
    spec = importlib.util.spec_from_file_location(
        "fl_fashion_mnist", REPO / "benchmarks" / "flower" / "fl_fashion_mnist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_short_federated_fashion_mnist_run():
    """The benchmark in small (3 clients, 3 rounds, in this process): uncompressed FedAvg
    and NNR-coded updates reach about the same accuracy with a few % of the bytes. Uses
    Fashion-MNIST when Debian's dataset-fashion-mnist is installed, else the benchmark's
    synthetic stand-in."""
    pytest.importorskip("torch", reason="torch is not installed")
    bench = _benchmark_module()
    task = bench.Task(clients=3, rounds=3, local_steps=20)
    if not bench.fl_task.data_available(task.data_dir):
        task = bench.Task(clients=3, rounds=3, local_steps=20, data_dir=bench.fl_task.SYNTHETIC)
    plain, _ = bench.run_one(task, None, grid=LocalGrid)
    coded, _ = bench.run_one(task, bench.coding_for(-32, -40), grid=LocalGrid)
    assert plain.accuracy[0] == coded.accuracy[0]               # the same initial model
    assert plain.accuracy[-1] > plain.accuracy[0] + 0.2
    assert coded.accuracy[-1] > plain.accuracy[-1] - 0.05
    model_bytes = 4 * sum(int(p.numel()) for p in bench.fl_task.build_model(task.width)
                          .state_dict().values())
    rounds = coded.strategy.rounds
    assert [len(r.up) for r in rounds] == [3, 3, 3]
    assert all(0 < b < 0.05 * model_bytes for r in rounds for b in r.up.values())
    assert all(r.up_edition1.keys() == r.up.keys() for r in rounds)


def test_flower_simulation_runtime(monkeypatch):
    """Flower's own simulation runtime (Ray workers, serialized messages, Context.state kept
    by the runtime between rounds): 2 clients, 3 rounds of the toy task."""
    pytest.importorskip("ray", reason="Flower's simulation runtime is not installed "
                                      "(pip install 'flwr[simulation]')")
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    # the workers import this module (the toy ClientApp) and nnr by name
    paths = [str(REPO), str(Path(__import__("nnr").__file__).resolve().parents[1])]
    monkeypatch.setenv("PYTHONPATH", __import__("os").pathsep.join(paths))
    strategy = NnrStrategy(FedAvg(fraction_evaluate=0.0, min_train_nodes=2,
                                  min_available_nodes=2), up=LinkCoding(qp=-36))
    server = ServerApp()

    @server.main()
    def main(grid, context):
        strategy.start(grid=grid, initial_arrays=_record(_initial()), num_rounds=3)

    run_simulation(server_app=server, client_app=_toy_app([nnr_mod]), num_supernodes=2,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": 2, "include_dashboard": False}})
    assert [r.round for r in strategy.rounds] == [1, 2, 3]
    assert all(len(r.up) == 2 for r in strategy.rounds)       # no chain was restarted:
    assert len(strategy._chains) == 2 and all(c.seq == 3 for c in strategy._chains.values())
