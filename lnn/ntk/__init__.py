"""Linearized networks and the empirical neural tangent kernel (chapter *Linearized networks*).

A network ``f(x; theta)`` with parameters ``theta in R^P`` is compared with its first-order Taylor expansion around
the initialization ``theta_0`` (Lee et al. 2019),

.. math:: f_{lin}(x; \\theta) = f(x; \\theta_0) + \\nabla_\\theta f(x; \\theta_0)^\\top (\\theta - \\theta_0),

whose tangent kernel is the empirical NTK of the network at ``theta_0`` (Jacot et al. 2018),

.. math:: \\Theta(x, x') = \\nabla_\\theta f(x; \\theta)^\\top \\nabla_\\theta f(x'; \\theta).

The module computes Gram matrices of ``Theta`` (fast, layer by layer, for dense networks; by Jacobian contraction or
NTK-vector products otherwise), the explicit Jacobian, the linearized model as a trainable ``nn.Module``, and the
kernel diagnostics of Ortiz-Jimenez, Moosavi-Dezfooli and Frossard (2021): kernel-target alignment, energy
concentration on the kernel's eigenvectors, eigenfunction tasks, the rotation of the kernel during training, and
the closed-form predictions of gradient descent on the linearized model (kernel regression).

The package is split by concern, and every name is importable from ``lnn.ntk``: :mod:`lnn.ntk.networks` (the
chapter's MLP and LeNet-like CNN), :mod:`lnn.ntk.kernels` (Gram matrices and Jacobians), :mod:`lnn.ntk.linearized`
(the linearized model), :mod:`lnn.ntk.diagnostics` (kernel diagnostics and kernel regression) and
:mod:`lnn.ntk.protocol` (the chapter's training protocol, which trains through :func:`lnn.training.train_ensemble`).

Every function here concerns scalar-output models: ``model(x)`` returns shape ``(n,)`` or ``(n, 1)``. Models are
evaluated example by example in the fallback methods, so put models with batch statistics in ``eval()`` mode.
"""

from .diagnostics import (
    eigenfunction_labels,
    energy_concentration,
    kernel_alignment,
    kernel_eigh,
    kernel_gd_residuals,
    kernel_regression_gd,
    rotation_ratios,
)
from .kernels import empirical_ntk, parameter_jacobian, scalar_function
from .linearized import LinearizedModel, linearize
from .networks import is_dense_network, lenet, mlp
from .protocol import kernel_train_binary, minibatches, train_binary

__all__ = [
    "mlp",
    "lenet",
    "is_dense_network",
    "empirical_ntk",
    "parameter_jacobian",
    "scalar_function",
    "LinearizedModel",
    "linearize",
    "kernel_alignment",
    "kernel_eigh",
    "energy_concentration",
    "eigenfunction_labels",
    "rotation_ratios",
    "kernel_gd_residuals",
    "kernel_regression_gd",
    "minibatches",
    "train_binary",
    "kernel_train_binary",
]

