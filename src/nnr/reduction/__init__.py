"""Parameter reduction tools of NNR (notes §3): batch-norm folding, local scaling,
sparsification, structured pruning, micro-structured pruning and unification, low-rank
decomposition, and performance maps. numpy only; the fine-tuning parts import PyTorch when
they run. See docs/reduction.md."""
from nnr.reduction._common import FineTune, TaskLoss
from nnr.reduction.batchnorm import (BatchNorm, find_batch_norms, fold_batch_norm,
                                     unfold_batch_norm)
from nnr.reduction.ldr import ToeplitzLike, toeplitz_like
from nnr.reduction.local_scaling import (add_local_scaling, fit_local_scaling, quantized,
                                         tune_local_scaling)
from nnr.reduction.lowrank import (LowRank, apply_low_rank, conv_pair, decompose,
                                   fine_tune_low_rank, low_rank, recompose)
from nnr.reduction.microstructure import (UnifyPlan, fine_tune_structured, fisher_diagonal,
                                          micro_prune, unify)
from nnr.reduction.perfmaps import (LayerMaps, MapLevels, PerformanceMaps,
                                    measure_performance_maps, read_performance_maps)
from nnr.reduction.postprocess import (apply_local_scaling, decode_model, postprocess,
                                       recompose_all)
from nnr.reduction.prune import (ChannelGroup, PrunePlan, PruneReport, Slice,
                                 channel_importance, prune, prune_channels)
from nnr.reduction.sparsify import (SparsifyPlan, SparsifyReport, compressibility_loss,
                                    magnitude_sparsify, sparsify, sparsity)

__all__ = ["FineTune", "TaskLoss", "BatchNorm", "find_batch_norms", "fold_batch_norm",
           "unfold_batch_norm", "ToeplitzLike", "toeplitz_like", "add_local_scaling",
           "fit_local_scaling", "quantized", "tune_local_scaling", "LowRank", "conv_pair",
           "decompose", "low_rank", "recompose", "apply_low_rank", "fine_tune_low_rank",
           "UnifyPlan", "fine_tune_structured", "fisher_diagonal", "micro_prune", "unify",
           "MapLevels", "PerformanceMaps", "LayerMaps", "measure_performance_maps",
           "read_performance_maps", "apply_local_scaling", "decode_model", "postprocess",
           "recompose_all", "ChannelGroup", "PrunePlan", "PruneReport", "Slice",
           "channel_importance", "prune", "prune_channels", "SparsifyPlan", "SparsifyReport",
           "compressibility_loss",
           "magnitude_sparsify", "sparsify", "sparsity"]
