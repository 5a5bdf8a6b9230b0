"""Spectral norm of a Linear layer applied to its output: the same function as torch's, cheaper.

``torch.nn.utils.parametrizations.spectral_norm`` recomputes ``W / sigma`` on every
forward and back-propagates through that division: two or three passes over the whole
weight matrix per discriminator call, which on the reference MLP discriminator (1.46 M
weights, batch 128) made a CPU training step about 1.4x slower (docs/benchmarks.md).

A Linear layer is linear in its weight, so ``x @ (W / sigma)^T + b == (x @ W^T) / sigma + b``.
:func:`spectral_norm_output` registers hooks that rescale the layer's output instead of
its weight: the division and its backward touch the (B, out) output, not the (out, in)
weight, and ``W v`` rides along the layer's own matrix product as one more input row
(:class:`OutputSpectralNorm`). Everything else is torch's algorithm, step for step:

- ``u``, ``v`` drawn ``N(0, 1)``, normalised, then ``15 + n_power_iterations`` power iterations
  at registration (torch's 15, then the training forward its registration runs): the same
  random draws and vectors as torch's for a seeded layer;
- in training mode, ``n_power_iterations`` in-place updates of ``u``, ``v`` per forward, without
  a graph; in eval mode, none;
- ``sigma = u . (W v)`` with ``u``, ``v`` held constant, so the gradient reaching ``W``
  includes the ``d sigma / d W = u v^T`` term, as torch's does.

The vectors are buffers (``weight_u``, ``weight_v``), so they are in the layer's
``state_dict``, restored by ``load_state_dict`` and averaged, copied or moved with the module.
``layer.weight`` stays the *unnormalised* parameter: read the normalised operator from the
layer's output, not from its weight. Forward hooks registered on the layer *before* it was
normalised run before this one, so they see the raw output, with the extra row.

Measured on the same CPU step (docs/benchmarks.md): 1.13x the plain step against torch's
1.41x; what remains is elementwise work on the outputs, the power iterations and the hooks.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from torchgan_lite.utils.checks import check_bool, check_int

__all__ = ["OutputSpectralNorm", "apply_spectral_norm", "spectral_norm_output"]


class OutputSpectralNorm:
    """The hooks of :func:`spectral_norm_output`: ``out -> (out - b) / sigma + b``.

    The pre-hook runs the power iteration (training mode) and appends ``v`` to a 2-D input
    as one more row, ``(B, in) -> (B + 1, in)``: the layer's own matrix product then also
    yields ``W v + b``, so ``sigma = u . (W v)`` costs no separate pass over the weight, and
    the gradient of ``sigma`` reaches ``W`` through the same product's backward (the extra
    row contributes ``c u v^T``) instead of a separate (out, in) outer product and sum. The
    forward hook drops that row and rescales the others. An input of another rank gets
    ``sigma`` from a ``torch.mv`` instead.

    Holds no reference to its layer (the hooks receive it), so a deep copy or a pickle of
    the module carries working copies.

    Attributes:
        n_power_iterations: Power iterations per training forward (Miyato et al.: 1).
        eps: Numerical floor of the vectors' norms (torch's default 1e-12).
    """

    def __init__(self, n_power_iterations: int = 1, eps: float = 1e-12) -> None:
        self.n_power_iterations = check_int("n_power_iterations", n_power_iterations)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(f"eps must be a float > 0, got {eps!r}")
        self.eps = float(eps)

    @torch.no_grad()
    def power_method(self, layer: nn.Linear, iterations: int) -> None:
        """``iterations`` in-place power iterations of the layer's ``weight_u``/``weight_v`` (torch's order)."""
        u, v = layer.get_buffer("weight_u"), layer.get_buffer("weight_v")  # (out,), (in,)
        weight = layer.weight  # (out, in)
        for _ in range(iterations):
            F.normalize(torch.mv(weight, v), dim=0, eps=self.eps, out=u)
            F.normalize(torch.mv(weight.t(), u), dim=0, eps=self.eps, out=v)

    def sigma(self, layer: nn.Linear) -> torch.Tensor:
        """The spectral-norm estimate ``u . (W v)``, 0-d, differentiable in ``W`` (not in u, v)."""
        return torch.vdot(_vector(layer, "weight_u"), torch.mv(layer.weight, _vector(layer, "weight_v")))

    def pre_hook(self, layer: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        assert isinstance(layer, nn.Linear)
        if kwargs or len(args) != 1:
            raise TypeError("call a spectral-normalised Linear layer with its input as its one positional argument")
        if layer.training:
            self.power_method(layer, self.n_power_iterations)
        x = args[0]
        if isinstance(x, torch.Tensor) and x.dim() == 2:
            v = _vector(layer, "weight_v").to(x.dtype)[None]  # (1, in)
            return (torch.cat([x, v]),), {}  # (B + 1, in)
        return None

    def __call__(self, layer: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        assert isinstance(layer, nn.Linear)
        bias = layer.bias
        if output.dim() == 2:  # the pre-hook appended v: the last row is W v + b
            out, wv = output[:-1], output[-1]  # (B, out), (out,)
            wv = wv.float() if bias is None else wv.float() - bias.float()  # (out,): under bf16 autocast too
            sigma = torch.vdot(_vector(layer, "weight_u").float(), wv)  # 0-d, float32
        else:
            out, sigma = output, self.sigma(layer).to(output.dtype)
        if bias is None:
            return out / sigma
        return (out - bias) / sigma + bias  # (B, out): x W^T / sigma + b


def _vector(layer: nn.Module, name: str) -> torch.Tensor:
    # a copy: a later training forward updates u, v in place, and autograd keeps what it is given
    return layer.get_buffer(name).clone(memory_format=torch.contiguous_format)


def spectral_norm_output(layer: nn.Linear, n_power_iterations: int = 1, eps: float = 1e-12) -> nn.Linear:
    """Spectral-normalise a Linear layer (or a subclass) by rescaling its output, in place.

    The same function, initial vectors and gradient as
    ``torch.nn.utils.parametrizations.spectral_norm(layer)`` (see the module docstring); a
    layer that already has the hook is returned unchanged.

    Args:
        layer: An ``nn.Linear`` (``torchgan_lite.nets.layers.Linear`` included).
        n_power_iterations: Power iterations per training forward.
        eps: Numerical floor of the norms.

    Returns:
        ``layer`` itself, with buffers ``weight_u`` (out,) and ``weight_v`` (in,), the hook, and the
        hook as ``layer.output_spectral_norm``.

    Raises:
        TypeError: ``layer`` is not an ``nn.Linear``.
        ValueError: its weight is already parametrized (torch's spectral norm, for one).
    """
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be a torch.nn.Linear, got {type(layer).__name__}")
    if isinstance(getattr(layer, "output_spectral_norm", None), OutputSpectralNorm):
        return layer
    if parametrize.is_parametrized(layer, "weight"):
        raise ValueError("layer's weight is already parametrized (e.g. by torch's spectral_norm); "
                         "spectral_norm_output needs the plain weight")
    hook = OutputSpectralNorm(n_power_iterations, eps)
    weight = layer.weight.detach()  # (out, in)
    with torch.no_grad():  # torch's initialisation: the same draws in the same order
        u = weight.new_empty(weight.shape[0]).normal_(0, 1)
        v = weight.new_empty(weight.shape[1]).normal_(0, 1)
        layer.register_buffer("weight_u", F.normalize(u, dim=0, eps=hook.eps))
        layer.register_buffer("weight_v", F.normalize(v, dim=0, eps=hook.eps))
    # torch runs 15 iterations, then one training forward of its parametrization when registering it
    hook.power_method(layer, 15 + hook.n_power_iterations)
    layer.register_forward_pre_hook(hook.pre_hook, with_kwargs=True)
    layer.register_forward_hook(hook)
    vars(layer)["output_spectral_norm"] = hook  # marks the layer (and lets a caller reach the hook)
    return layer


_NORMED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


_METHODS = ("auto", "parametrization", "output")


def _spectral_normed(layer: nn.Module) -> bool:
    """Whether ``layer`` is spectral-normalised already, by its output hook or by torch's parametrization."""
    if isinstance(getattr(layer, "output_spectral_norm", None), OutputSpectralNorm):
        return True
    return parametrize.is_parametrized(layer, "weight") and any(
        type(p).__name__ == "_SpectralNorm" for p in cast(Any, layer).parametrizations["weight"])


def apply_spectral_norm(module: nn.Module, n_power_iterations: int = 1, eps: float = 1e-12,
                        method: str = "auto", embeddings: bool = False) -> nn.Module:
    """Spectral-normalise every Linear/Conv/ConvTranspose layer of ``module``, in place.

    Two implementations of the same function (Miyato et al. 2018; one power iteration per
    training forward; the singular vectors are buffers, so they are saved in the module's
    ``state_dict`` and restored by ``load_state_dict``):

    - ``torch.nn.utils.parametrizations.spectral_norm``: ``weight`` becomes ``W / sigma``,
      recomputed on every forward (``state_dict`` keys ``parametrizations.weight.original``,
      ``..._u``, ``..._v``);
    - :func:`torchgan_lite.nets.spectral.spectral_norm_output`, Linear layers only: the layer's
      output is rescaled instead, ``(x W^T) / sigma + b`` (keys ``weight``, ``weight_u``,
      ``weight_v``; ``weight`` stays unnormalised). The same values and gradients up to
      rounding, and the division's backward touches the (B, out) output instead of the
      (out, in) weight: the reference MLP discriminator's CPU step costs 1.41x the plain
      step with the first, 1.13x with the second (docs/benchmarks.md).

    Subclasses count (``torchgan_lite.nets.layers.Linear`` included). Layers already
    spectral-normalised by either are left as they are.

    Note: the ``state_dict`` keys change: apply it before building the optimizer and before
    loading a checkpoint saved with spectral norm, with the same ``method``.

    Args:
        module: The discriminator (or any module).
        n_power_iterations: Power iterations per forward (Miyato et al.: 1).
        eps: Numerical floor of the norms.
        method: ``"auto"``: Linear layers by the output, the others by torch's
            parametrization; ``"parametrization"``: torch's for every layer; ``"output"``:
            the output for every layer, which must then all be Linear.
        embeddings: Also normalise every ``nn.Embedding`` (its ``(num, dim)`` table, by torch's
            parametrization; not with ``method="output"``): the class embedding of a projection
            discriminator (Miyato & Koyama 2018) or of a conditional generator.

    Returns:
        ``module`` itself.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    check_int("n_power_iterations", n_power_iterations)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    kinds = (*_NORMED, nn.Embedding) if check_bool("embeddings", embeddings) else _NORMED
    found = [(name, layer) for name, layer in module.named_modules() if isinstance(layer, kinds)]  # module order
    if not found:
        raise ValueError(f"module has no Linear or Conv layer to spectral-normalise: {type(module).__name__}")
    if method == "output":
        for name, layer in found:
            if not isinstance(layer, nn.Linear):
                raise ValueError(f"method='output' normalises Linear layers only, but {name or 'module'} is a "
                                 f"{type(layer).__name__}: use method='auto' or 'parametrization'"
                                 f"{' (or embeddings=False)' if isinstance(layer, nn.Embedding) else ''}")
    for _, layer in found:
        if _spectral_normed(layer):
            continue
        if isinstance(layer, nn.Linear) and method != "parametrization":
            spectral_norm_output(layer, n_power_iterations=n_power_iterations, eps=eps)
        else:
            spectral_norm(layer, n_power_iterations=n_power_iterations, eps=eps)
    return module
