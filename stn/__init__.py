"""stn: Spatial Transformer Networks (Jaderberg et al., NeurIPS 2015) in PyTorch.

Where each part of the paper lives:

- :mod:`stn.transforms`   the grid generator: affine, attention, projective, thin-plate spline
- :mod:`stn.sampling`     the sampler: ``grid_sample`` and the paper's bilinear kernel sum
- :mod:`stn.localization` the localisation networks that regress θ
- :mod:`stn.transformer`  :class:`SpatialTransformer`: the three put together
- :mod:`stn.model`        ST-CNN classifiers and the CNN baseline
- :mod:`stn.data`         distorted MNIST (R, RTS, P, E, TC, Pair, Wild)
- :mod:`stn.train`        training; :mod:`stn.replay` what it records; :mod:`stn.checkpoint` a run to resume
- :mod:`stn.zoo`          pretrained models: :func:`load_model`, :func:`create_model`
- :mod:`stn.preprocess`   any picture → the model's input
- :mod:`stn.cli`          ``python -m stn``

Example:
    >>> import torch, stn
    >>> st = stn.SpatialTransformer((1, 28, 28), "affine")
    >>> y, theta = st(torch.rand(4, 1, 28, 28))
    >>> tuple(y.shape), tuple(theta.shape)
    ((4, 1, 28, 28), (4, 6))
"""

from stn import transforms
from stn.model import ModelConfig, Prediction, STClassifier
from stn.preprocess import ImageError, preprocess
from stn.sampling import sample
from stn.transformer import SpatialTransformer
from stn.zoo import DEFAULT_MODEL, create_model, list_models, load_model

__all__ = [
    "transforms",
    "sample",
    "SpatialTransformer",
    "STClassifier",
    "ModelConfig",
    "Prediction",
    "load_model",
    "create_model",
    "list_models",
    "preprocess",
    "ImageError",
    "DEFAULT_MODEL",
]

__version__ = "0.1.0"
