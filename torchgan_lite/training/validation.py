"""The trainer's checks at its boundary: arguments, the networks' shapes, every batch.

Each function raises ``TypeError``/``ValueError`` naming the argument, the value and
what was expected, before anything is trained or changed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from torchgan_lite.nets.conditional import check_labels as check_label_tensor
from torchgan_lite.utils.checks import check_int

__all__ = [
    "check_batch",
    "check_fit_data",
    "check_labels",
    "check_optimizer",
    "check_parts",
    "check_registrable",
    "check_sample_request",
    "example_batch",
    "local_rank_device",
    "output_range",
    "probe",
    "range_mismatch",
]


def local_rank_device(device: torch.device | str) -> torch.device | str:
    """Under torchrun with several processes, ``"cuda"``/``"auto"`` mean this process's GPU, ``cuda:LOCAL_RANK``."""
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is None or int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not torch.cuda.is_available():
        return device
    if device in ("cuda", "auto") or (isinstance(device, torch.device) and device.type == "cuda"
                                      and device.index is None):
        torch.cuda.set_device(int(local_rank))
        return torch.device("cuda", int(local_rank))
    return device


def check_optimizer(name: str, opt: object, module: nn.Module, module_name: str) -> None:
    """``opt`` must be a torch optimizer over ``module``'s parameters only (swapped optimizers are caught)."""
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"{name} must be a torch.optim.Optimizer, got {type(opt).__name__}")
    owned = {id(p) for p in module.parameters()}
    foreign = [p for g in opt.param_groups for p in g["params"] if id(p) not in owned]
    if foreign:
        raise ValueError(f"{name} updates {len(foreign)} tensor(s) that are not parameters of the "
                         f"{module_name}: build it from {module_name}.parameters()")


def probe(generator: nn.Module, discriminator: nn.Module, loss: object, regularizers: Sequence[object],
          latent_dim: int, num_classes: int | None, device: torch.device, dtype: torch.dtype) -> tuple[int, ...]:
    """One tiny forward pass through G then D (eval mode, restored after) to check that the parts fit.

    Also checks that the loss gives scalars, and warns about a discriminator that ends in a
    sigmoid (the losses take logits). Returns the sample shape.
    """
    g, d = generator, discriminator
    g_mode, d_mode = g.training, d.training
    g.eval()
    d.eval()
    try:
        z = torch.zeros(2, latent_dim, device=device, dtype=dtype)  # (2, latent_dim)
        y = None if num_classes is None else torch.zeros(2, dtype=torch.int64, device=device)
        with torch.no_grad():
            try:
                fake = g(z) if y is None else g(z, y)
            except Exception as err:
                raise ValueError(f"latent_dim={latent_dim}: the generator rejected noise of shape "
                                 f"(2, {latent_dim}): {type(err).__name__}: {err}") from err
            if not isinstance(fake, torch.Tensor) or fake.dim() < 2 or fake.shape[0] != 2:
                raise ValueError(f"generator must return a (B, ...) tensor for noise (2, {latent_dim}), "
                                 f"got {getattr(fake, 'shape', type(fake).__name__)}")
            try:
                logits = d(fake) if y is None else d(fake, y)
            except Exception as err:
                raise ValueError(f"the discriminator rejected the generator's output of shape "
                                 f"{tuple(fake.shape)}: {type(err).__name__}: {err}") from err
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) not in ((2,), (2, 1)):
                raise ValueError("discriminator must return one logit per sample, shape (B,) or (B, 1); for "
                                 f"a batch of 2 it returned {getattr(logits, 'shape', type(logits).__name__)}")
            logits = logits.reshape(2).float()
            try:  # a loss may depend on state that exists only once training runs: then this check waits
                lo: Any = loss
                d_value = lo.discriminator_loss(logits, logits)
                g_value = lo.generator_loss(logits, logits) if getattr(lo, "needs_real_logits", False) \
                    else lo.generator_loss(logits)  # a relativistic loss also takes the real logits
                values: tuple[tuple[str, Any], ...] = (("discriminator_loss(real_logits, fake_logits)", d_value),
                                                       ("generator_loss(fake_logits)", g_value))
            except Exception:
                values = ()
            for what, value in values:
                if not isinstance(value, torch.Tensor) or value.dim() != 0:
                    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                    raise ValueError(f"loss.{what} must return a scalar (0-d) tensor, got {shape}: reduce it, "
                                     "e.g. with .mean()")
    finally:
        g.train(g_mode)
        d.train(d_mode)
    leaves = [m for m in d.modules() if not list(m.children())]
    if leaves and isinstance(leaves[-1], nn.Sigmoid):
        warnings.warn(f"the discriminator ends in a Sigmoid, but {type(loss).__name__} takes logits: remove the "
                      "Sigmoid (BCEWithLogits(logit) is BCE(sigmoid(logit)), and safer)", stacklevel=3)
    return tuple(fake.shape[1:])


def check_fit_data(data: object, world_size: int) -> int | None:
    """``fit``'s ``data`` must be a re-iterable of batches; returns its length (batches per epoch) or None."""
    if isinstance(data, (torch.Tensor, str, bytes)) or not isinstance(data, Iterable) \
            or type(data).__module__ == "numpy":
        raise TypeError(f"data must be an iterable of batches, e.g. TensorLoader(images) or a DataLoader, "
                        f"got {type(data).__name__}")
    steps = len(data) if hasattr(data, "__len__") else None  # type: ignore[arg-type]
    if steps == 0:
        raise ValueError("data is empty: it yields no batches (check batch_size against the dataset size)")
    data_world = getattr(data, "world_size", None)
    if isinstance(data_world, int) and data_world != world_size:
        raise ValueError(f"data shards for world_size={data_world} but the trainer runs on {world_size} "
                         "process(es): build the TensorLoader after the process group exists (or after the "
                         "trainer), or pass rank= and world_size= to it")
    return steps


def check_batch(batch: object, *, sample_shape: tuple[int, ...], num_classes: int | None, device: torch.device,
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate one batch against the models' sample shape, classes, device and dtype.

    Returns:
        ``(real, labels)`` on ``device`` (labels None if unconditional).
    """
    labels = None
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("batch is an empty tuple; expected a tensor or (images, labels)")
        if num_classes is not None:
            if len(batch) < 2:
                raise ValueError("a conditional generator needs (images, labels) batches, got a 1-tuple")
            labels = batch[1]
        batch = batch[0]  # (images, labels): an unconditional trainer uses the images
    elif num_classes is not None:
        raise TypeError(f"the generator is conditional (num_classes={num_classes}): batches must be "
                        f"(images, labels), got a {type(batch).__name__}; use TensorLoader(images, labels)")
    real = batch
    if not isinstance(real, torch.Tensor):
        raise TypeError(f"batch must be a torch.Tensor (or an (images, labels) tuple), got {type(real).__name__}: "
                        "data must yield tensors (wrap arrays with torch.from_numpy and TensorLoader)")
    if real.layout != torch.strided:
        raise TypeError(f"real must be a dense (strided) tensor, got layout {real.layout}; call .to_dense()")
    if real.device.type == "meta":
        raise ValueError("real is on the 'meta' device and holds no data")
    if not real.is_floating_point():
        raise TypeError(f"real must be a floating-point tensor in the generator's range (e.g. [-1, 1]), "
                        f"got dtype {real.dtype}; convert integer images with x.float() / 127.5 - 1")
    if real.dtype != dtype:
        raise TypeError(f"real has dtype {real.dtype} but the models are {dtype}; "
                        f"convert it with .to({dtype})")
    if real.dim() < 2 or tuple(real.shape[1:]) != sample_shape:
        raise ValueError(f"real has shape {tuple(real.shape)} but the generator makes samples of shape "
                         f"(B, {', '.join(map(str, sample_shape))}): the data and the models must agree")
    if real.shape[0] < 1:
        raise ValueError("real is an empty batch (0 samples)")
    if real.device != device:
        real = real.to(device, non_blocking=True)
    if labels is not None and num_classes is not None:
        labels = check_labels(labels, real.shape[0], num_classes, device)
    return real, labels


def example_batch(data: Iterable[Any]) -> object | None:
    """One batch of ``data`` to check, taken without moving a resumable loader's position.

    A loader with ``peek()`` (:class:`~torchgan_lite.TensorLoader`) gives its first batch without
    drawing a permutation. Other stateful loaders (with ``state_dict``) are not iterated (None).
    A plain re-iterable (a list, a ``DataLoader``) yields its first batch from a fresh iterator.
    """
    peek = getattr(data, "peek", None)
    if callable(peek):
        return peek()
    if callable(getattr(data, "state_dict", None)):
        return None
    it = iter(data)
    if it is data:  # a one-shot iterator: taking a batch would lose it
        return None
    try:
        return next(it)
    except StopIteration:
        raise ValueError("data yielded no batches: an empty dataset, or batch_size larger than it") from None


def output_range(generator: nn.Module) -> tuple[float, float] | None:
    """The range of the generator's last layer, when it is a bounded activation (Tanh, Sigmoid, Hardtanh)."""
    leaves = [m for m in generator.modules() if not list(m.children())]
    last = leaves[-1] if leaves else None
    if isinstance(last, nn.Tanh):
        return (-1.0, 1.0)
    if isinstance(last, nn.Sigmoid):
        return (0.0, 1.0)
    if isinstance(last, nn.Hardtanh):
        return (float(last.min_val), float(last.max_val))
    return None


def range_mismatch(real: torch.Tensor, bounds: tuple[float, float] | None) -> str | None:
    """Why ``real``'s values do not look like samples of a generator with output ``bounds`` (or None).

    Far outside the range (images in [0, 255] for a tanh), or only its upper part (images in [0, 1]
    for a tanh, whose fakes the discriminator can then tell by their negative values). One host read.
    """
    if bounds is None:
        return None
    lo, hi = bounds
    span = hi - lo
    r_lo, r_hi = (float(v) for v in torch.aminmax(real.detach().float()))
    if r_hi > hi + 0.25 * span or r_lo < lo - 0.25 * span:
        return (f"the real batch spans [{r_lo:.3g}, {r_hi:.3g}] but the generator ends in a layer bounded to "
                f"[{lo:g}, {hi:g}]: scale the data to the generator's range (images in [0, 255]: x / 127.5 - 1)")
    if lo < 0 <= r_lo and r_hi - r_lo > 0.25 * span and r_lo >= lo + 0.45 * span:
        return (f"the real batch spans [{r_lo:.3g}, {r_hi:.3g}], only the upper part of the generator's "
                f"[{lo:g}, {hi:g}]: the discriminator can tell fakes by their values below {r_lo:.3g}; "
                "scale the data (images in [0, 1]: x * 2 - 1)")
    return None


def check_registrable(name: object, obj: object) -> object:
    """``register_state``'s arguments: a non-empty name and an object with state_dict/load_state_dict."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if not (callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))):
        raise TypeError(f"{name}: the object must have state_dict() and load_state_dict(), got {type(obj).__name__}")
    return obj


def check_sample_request(n: object, z: object, labels: object, *, latent_dim: int, num_classes: int | None,
                         device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``GANTrainer.sample``'s arguments checked.

    Returns:
        The noise (None: to be drawn) and labels on the device (drawn uniformly if None for a
        conditional generator).
    """
    check_int("n", n, 1)
    assert isinstance(n, int)
    if z is not None:
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"z must be a torch.Tensor or None, got {type(z).__name__}")
        if tuple(z.shape) != (n, latent_dim):
            raise ValueError(f"z must have shape (n, latent_dim) = ({n}, {latent_dim}), got {tuple(z.shape)}")
        z = z.to(device, dtype)
    if num_classes is None:
        if labels is not None:
            raise ValueError("labels were given but the generator is not conditional (no num_classes)")
        return z, None
    if labels is None:
        return z, torch.randint(0, num_classes, (n,), device=device)
    return z, check_labels(labels.cpu() if isinstance(labels, torch.Tensor) else labels, n, num_classes, device)


def check_labels(labels: object, n: int, num_classes: int, device: torch.device, name: str = "labels"
                 ) -> torch.Tensor:
    """Class indices: an int64 tensor ``(n,)`` in ``[0, num_classes)``; returned on ``device``.

    The builders' dtype and shape check (:func:`torchgan_lite.nets.conditional.check_labels`), plus
    the values where reading them is free (on the host).
    """
    labels = check_label_tensor(labels, n, num_classes, name)
    if labels.device.type == "cpu":  # a free check on the host; on a GPU it would be a sync per step
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name} must be in [0, {num_classes}), got values in [{lo}, {hi}]")
    return labels.to(device, non_blocking=True)


def _instance(name: str, value: object, *methods: str) -> None:
    if isinstance(value, type):
        raise TypeError(f"{name} must be an instance, got the class {value.__name__}: write {value.__name__}()")
    for method in methods:
        if not callable(getattr(value, method, None)):
            raise TypeError(f"{name} must have a callable {method}(); got {type(value).__name__} "
                            "(see torchgan_lite.losses)")


def check_parts(generator: object, discriminator: object, loss: object, latent_dim: object
                ) -> tuple[int, int | None]:
    """Check a step's parts before any is used.

    Returns:
        ``(latent_dim, num_classes)``: the noise size (from the generator's ``latent_dim``
        attribute when the argument is None) and the generator's ``num_classes`` (None if
        unconditional).
    """
    for name, module in (("generator", generator), ("discriminator", discriminator)):
        if isinstance(module, type):
            raise TypeError(f"{name} must be an nn.Module instance, got the class {module.__name__}")
        if not isinstance(module, nn.Module):
            raise TypeError(f"{name} must be a torch.nn.Module, got {type(module).__name__}")
        if not any(p.requires_grad for p in module.parameters()):
            raise ValueError(f"{name} has no trainable parameters: there is nothing to train")
    if generator is discriminator:
        raise ValueError("generator and discriminator must be two different modules")
    _instance("loss", loss, "discriminator_loss", "generator_loss")
    if latent_dim is None:
        latent_dim = getattr(generator, "latent_dim", None)
        if latent_dim is None:
            raise ValueError("latent_dim is required: the generator has no latent_dim attribute, "
                             "so pass latent_dim=N")
    check_int("latent_dim", latent_dim, 1)
    num_classes = getattr(generator, "num_classes", None)
    if num_classes is not None:
        check_int("generator.num_classes", num_classes, 1)
    return latent_dim, num_classes  # type: ignore[return-value]
