"""NNR-coded model updates for Flower (https://flower.ai), Message API (``flwr>=1.21``).

On the server, wrap any strategy; on the client, add the mod::

    from nnr.integrations.flower import LinkCoding, NnrStrategy, nnr_mod

    strategy = NnrStrategy(FedAvg(), up=LinkCoding(qp=-32), down=LinkCoding(qp=-38))
    app = ClientApp(mods=[nnr_mod])

See docs/federated.md. Importing this package without Flower raises
:class:`nnr.UnsupportedFeatureError` with the install hint (``pip install 'nnr[flower]'``).
"""
from nnr.integrations.flower._records import LinkCoding
from nnr.integrations.flower.mod import nnr_mod
from nnr.integrations.flower.strategy import NnrStrategy, RoundBytes

__all__ = ["LinkCoding", "NnrStrategy", "RoundBytes", "nnr_mod"]
