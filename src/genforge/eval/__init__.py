"""Evaluation of generators: the measures that say how good a model's samples are.

For image generators, "FD-FMNIST": the Fréchet distance (Heusel et al. 2017), k-NN precision and recall
(Kynkäänniemi et al. 2019) and class accuracy of generated images, all in the 128-d feature space of a
small classifier trained on Fashion-MNIST (``image_features``), computed by ``image_metrics``.

Importing this package is cheap: the submodules (which need torch and numpy) load when imported.
Nothing below the top of the package graph imports ``eval``; ``eval`` imports core modules, codecs,
models and data only (tests/test_layers.py).
"""
from __future__ import annotations
