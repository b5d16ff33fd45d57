"""Helpers for the practicum on adversarial robustness and interpretability.

Modules (import them explicitly, e.g. ``from helpers import attacks``):

- ``helpers.utils``    seeds, devices, input validation, eval-mode context;
- ``helpers.data``     MNIST (embedded 5,000 digits or full) and CIFAR-10 as tensors;
- ``helpers.models``   the course's models and their shipped checkpoints;
- ``helpers.attacks``  FGSM, PGD (L-inf and L2) and clean / robust accuracy;
- ``helpers.train``    standard and adversarial training, and its command line.

Conventions: images are float tensors N x C x H x W with pixels in [0, 1];
normalization is a layer inside each model; eps is measured in pixel units.
"""

__version__ = "0.1.0"
