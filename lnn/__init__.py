"""lnn: the torch dynamics core of the executable lecture notes on linear neural networks.

The public API is flat: ``lnn.end_to_end``, ``lnn.balanced_factors``, ``lnn.gradient_descent`` and so on. Each
function's docstring gives the equation it implements and the chapter that derives it. Modules:

* :mod:`lnn.network`: the end-to-end matrix, the gradient formula, initializations;
* :mod:`lnn.dynamics`: gradient descent, the normalized step, the end-to-end rule, gradient flow;
* :mod:`lnn.theory`: the preconditioner ``P_W``, singular-value ODE, convergence bound, loop integrals;
* :mod:`lnn.tasks`: objectives (regression, sensing, completion) and synthetic targets, the nuclear-norm baseline;
* :mod:`lnn.tensor`: CP tensor factorization;
* :mod:`lnn.metrics`: effective rank, balancedness, Schatten norms, deficiency margin;
* :mod:`lnn.plotting`: the book's figure style (loaded on first use; it needs matplotlib).

Chapter-specific toolboxes are submodules, loaded on first use (``lnn.ntk.empirical_ntk`` works after
``import lnn``): :mod:`lnn.regression` (l_p regression bookkeeping), :mod:`lnn.baselines` (minimum-norm and
minimum-l1 solutions), :mod:`lnn.hierarchical` (hierarchical tensor factorization), :mod:`lnn.layers`
(overparameterized layers), :mod:`lnn.locality` (locality and entanglement tools), :mod:`lnn.ntk` (empirical NTK
and linearization), :mod:`lnn.training` (many small networks trained at once), :mod:`lnn.explorer` (the
interactive explorers) and others. Course material (the exercise checkers) lives outside the library.

The module graph flows one way (``tests/test_import_graph.py``): private validation helpers, then the models and
objectives, the closed-form theory, the training driver, the toolboxes, and this flat namespace on top.

Tensors default to float64, the precision in which the book checks theorems. Bad input raises at the door:
:class:`TypeError` for the wrong kind of object (a numpy array, an integer tensor, mismatched dtypes or devices),
:class:`ValueError` for a wrong value (shape, sign, NaN or infinity), :class:`FloatingPointError` for a run that
diverges.
"""

from .dynamics import (
    Parametrization,
    Trajectory,
    end_to_end_descent,
    first_step_below,
    gradient_descent,
    gradient_flow,
)
from .metrics import balancedness, balancedness_gaps, deficiency_margin, effective_rank, nuclear_norm, schatten_norm
from .network import (
    balanced_factors,
    FactorProduct,
    dims_of,
    end_to_end,
    factor_gradients,
    gaussian_factors,
    identity_factors,
    orthogonal_factors,
    partial_products,
)
from .tasks import (
    Completion,
    DivergenceGuard,
    LpRegression,
    MatrixSensing,
    Objective,
    as_value_and_grad,
    diagonal_sensing,
    low_rank_matrix,
    nuclear_norm_completion,
    random_mask,
    singular_value_threshold,
)
from .tensor import CPProduct, cp_component_norms, cp_factor_gradients, cp_gaussian_factors, cp_tensor, random_cp_tensor, unfold
from .theory import (
    EndToEndRule,
    blowup_time,
    end_to_end_field,
    linear_convergence_bound,
    loop_integral,
    objective_hessian,
    preconditioned_gradient,
    preconditioner_eigenvalues,
    preconditioner_matrix,
    scalar_output_velocity,
    singular_value_closed_form,
    singular_value_velocity,
)

__version__ = "0.1.0"

# The flat public namespace (the reference part of the book documents each name at its defining module).
__all__ = [
    "CPProduct",
    "Completion",
    "DivergenceGuard",
    "EndToEndRule",
    "FactorProduct",
    "LpRegression",
    "MatrixSensing",
    "Objective",
    "Parametrization",
    "Trajectory",
    "as_value_and_grad",
    "balanced_factors",
    "balancedness",
    "balancedness_gaps",
    "blowup_time",
    "cp_component_norms",
    "cp_factor_gradients",
    "cp_gaussian_factors",
    "cp_tensor",
    "deficiency_margin",
    "diagonal_sensing",
    "dims_of",
    "effective_rank",
    "end_to_end",
    "end_to_end_descent",
    "end_to_end_field",
    "factor_gradients",
    "first_step_below",
    "gaussian_factors",
    "gradient_descent",
    "gradient_flow",
    "identity_factors",
    "linear_convergence_bound",
    "loop_integral",
    "low_rank_matrix",
    "nuclear_norm",
    "nuclear_norm_completion",
    "objective_hessian",
    "orthogonal_factors",
    "partial_products",
    "preconditioned_gradient",
    "preconditioner_eigenvalues",
    "preconditioner_matrix",
    "random_cp_tensor",
    "random_mask",
    "scalar_output_velocity",
    "schatten_norm",
    "singular_value_closed_form",
    "singular_value_threshold",
    "singular_value_velocity",
    "unfold",
]

# Loaded on first access: the chapter toolboxes, and the figure style (so `import lnn` needs no matplotlib).
_SUBMODULES = {
    "plotting",
    "regression",
    "baselines",
    "hierarchical",
    "layers",
    "locality",
    "ntk",
    "explorer",
    "training",
    "threads",
    "anisotropy",
    "tutorial_cnn",
}


def __getattr__(name: str):
    """Import the chapter toolboxes on first access (PEP 562), so ``import lnn`` stays fast."""
    if name in _SUBMODULES:
        import importlib

        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise  # a missing dependency of the submodule (e.g. matplotlib for lnn.plotting): say which
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_SUBMODULES))
