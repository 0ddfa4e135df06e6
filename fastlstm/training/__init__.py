"""Training tools: a readout, losses, optimisers, clipping, :func:`fit` and an L-BFGS adapter.

A small toolkit, not a framework::

    from fastlstm import LSTM
    from fastlstm.training import SequenceModel, Adam, fit, mean_squared_error

    model = SequenceModel(LSTM(1, 32, seed=0), 1)
    history = fit(model, mean_squared_error, Adam(model.params, lr=1e-2), [(x, y)], epochs=50)
"""
from .fit import FlatObjective, History, evaluate, fit, minimize, predict
from .losses import mean_squared_error, softmax_cross_entropy
from .model import SequenceModel
from .optimisers import SGD, Adam, clip_by_global_norm, global_norm
from .readout import Linear

__all__ = ["Linear", "SequenceModel", "mean_squared_error", "softmax_cross_entropy", "SGD", "Adam",
           "clip_by_global_norm", "global_norm", "fit", "evaluate", "predict", "minimize", "FlatObjective",
           "History"]
