"""The linearized model ``f_lin(x; theta) = f(x; theta_0) + J(x; theta_0)(theta - theta_0)`` (chapter
*Linearized networks*; Lee et al. 2019)."""

from __future__ import annotations

import copy

import torch  # noqa: F401 (doctests)
from torch import Tensor, nn
from torch.func import functional_call, jvp

from .networks import mlp  # noqa: F401 (doctests)

__all__ = ["LinearizedModel", "linearize"]

# ----------------------------------------------------------------------------------------------------------------
# Public: the linearized model
# ----------------------------------------------------------------------------------------------------------------


class LinearizedModel(nn.Module):
    """First-order Taylor expansion of a model around its parameters ``theta_0`` at construction (Lee et al. 2019;
    chapter *Linearized networks*):

    .. math:: f_{lin}(x; \\theta) = f(x; \\theta_0) + J(x; \\theta_0)(\\theta - \\theta_0),

    evaluated with one forward-mode product ``torch.func.jvp`` (no Jacobian is formed). Its ``parameters()`` are
    ``theta``, in the order and shapes of the model's, starting at ``theta_0``; gradients flow through the JVP, so any
    torch optimizer trains it. The wrapped copy of the model (and its buffers, e.g. batch-norm statistics) stays
    frozen at ``theta_0``; the original model is never modified.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        named = list(model.named_parameters())
        if not named:
            raise ValueError("model has no parameters to linearize")
        base = copy.deepcopy(model)
        for p in base.parameters():
            p.requires_grad_(False)
        self._base = (base,)  # a tuple hides it from nn.Module registration: its weights are not ours
        self._names = [name for name, _ in named]
        self.params = nn.ParameterList([nn.Parameter(p.detach().clone()) for _, p in named])
        for i, (_, p) in enumerate(named):
            self.register_buffer(f"theta0_{i}", p.detach().clone())
        self._buffer_names = [name for name, _ in model.named_buffers()]
        for i, (_, b) in enumerate(model.named_buffers()):
            self.register_buffer(f"model_buffer_{i}", b.detach().clone())

    @property
    def base_model(self) -> nn.Module:
        """The frozen copy of the model at ``theta_0``."""
        return self._base[0]

    def theta0(self) -> list[Tensor]:
        """The expansion point ``theta_0``, in ``parameters()`` order."""
        return [getattr(self, f"theta0_{i}") for i in range(len(self._names))]

    def forward(self, x: Tensor) -> Tensor:
        base = self.base_model
        base.train(self.training)
        theta0 = dict(zip(self._names, self.theta0()))
        tangent = {name: p - p0 for (name, p0), p in zip(theta0.items(), self.params)}
        buffers = {name: getattr(self, f"model_buffer_{i}") for i, name in enumerate(self._buffer_names)}

        def f(params: dict) -> Tensor:
            return functional_call(base, (params, buffers), (x,))

        out, dout = jvp(f, (theta0,), (tangent,))
        return out + dout


def linearize(model: nn.Module) -> LinearizedModel:
    """The linearization ``f_lin(x; theta) = f(x; theta_0) + J(x; theta_0)(theta - theta_0)`` of ``model`` around its
    current parameters, as a trainable :class:`LinearizedModel` (chapter *Linearized networks*; Lee et al. 2019).

    Examples
    --------
    >>> net = mlp([3, 8, 1], "tanh", generator=torch.Generator().manual_seed(0))
    >>> lin = linearize(net)
    >>> x = torch.randn(5, 3, dtype=torch.float64)
    >>> bool(torch.allclose(lin(x), net(x)))  # equal at theta_0
    True
    """
    return LinearizedModel(model)
