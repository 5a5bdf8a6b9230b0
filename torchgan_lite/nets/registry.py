"""The builder registry: builders that remember how they were built, and rebuild from that record.

A builder (a plain function returning an ``nn.Module``) is registered under a name
with :func:`register_builder`. Every module it returns then carries

    module.config == {"builder": "mlp_generator", "kwargs": {"latent_dim": 100, "hidden": [256, 512, 1024], ...}}

with *every* argument of the call, defaults included (so a later change of a default
does not change what a saved config rebuilds), as plain values that
``torch.load(weights_only=True)`` reads back: ints, floats, strs, bools, None and lists
(tuples become lists). A call with an argument that cannot be stored that way is
refused with a ``TypeError`` naming it. Checkpoints save :func:`module_config` of both
networks, and :func:`build` rebuilds a module from it (nanoGPT's ``model_args``; timm's
``create_model``):

    from torchgan_lite import build, mlp_generator, module_config

    g = mlp_generator(latent_dim=64)
    again = build(module_config(g))   # same architecture, fresh weights
    again.load_state_dict(g.state_dict())

The library's builders (:mod:`~torchgan_lite.nets.mlp`, :mod:`~torchgan_lite.nets.conditional`,
:mod:`~torchgan_lite.nets.dcgan`, :mod:`~torchgan_lite.nets.resnet`) are registered when
``torchgan_lite`` is imported; a builder of your own is registered by decorating it, and
rebuilds once the module that defines it has been imported.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from torch import nn

__all__ = ["Config", "build", "builders", "module_config", "register_builder"]

P = ParamSpec("P")
M = TypeVar("M", bound=nn.Module)

#: ``{"builder": name, "kwargs": {argument: plain value}}``.
Config = dict[str, Any]

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_PLAIN = "ints, floats, strs, bools, None and sequences (lists, tuples) of them"


def _plain(value: object, where: str) -> object:
    """``value`` as a ``weights_only``-loadable plain value (tuples -> lists); ``TypeError`` naming ``where``."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)  # an IntEnum or other int subclass is stored as the int
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):  # a tuple, list, range, torch.Size
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{where}={value!r} ({type(value).__name__}) cannot be recorded in module.config: a builder's "
                    f"arguments must be {_PLAIN}")


def _origin(fn: Callable[..., Any]) -> tuple[str, str]:
    return getattr(fn, "__module__", "?"), getattr(fn, "__qualname__", repr(fn))


def register_builder(name: str) -> Callable[[Callable[P, M]], Callable[P, M]]:
    """Register a builder under ``name``; the modules it returns record ``module.config``.

    The decorated function keeps its signature and docstring. After it returns, the
    module gets ``config = {"builder": name, "kwargs": {...}}`` holding every argument
    of the call (defaults applied) as plain values.

    Args:
        name: The name :func:`build` knows it by (``"mlp_generator"``); unique.

    Returns:
        The decorator.

    Raises:
        ValueError: ``name`` is empty or already registered to another function, or the
            function takes ``*args``/``**kwargs``.
        TypeError (at a call of the builder): an argument is not a plain value
            (int, float, str, bool, None, or a list/tuple of them), so it could not be
            saved in a checkpoint; or the builder returned something that is not an ``nn.Module``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")

    def decorator(fn: Callable[P, M]) -> Callable[P, M]:
        old = _BUILDERS.get(name)
        if old is not None and _origin(old) != _origin(fn):
            raise ValueError(f"builder name {name!r} is already registered to {'.'.join(_origin(old))}")
        signature = inspect.signature(fn)
        variadic = [str(p) for p in signature.parameters.values()
                    if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
        if variadic:
            raise ValueError(f"builder {name!r} takes {variadic[0]}: a registered builder takes named arguments "
                             "only, so that its config can name each one")

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> M:
            module = fn(*args, **kwargs)  # the builder checks its arguments first, with its own messages
            if not isinstance(module, nn.Module):
                raise TypeError(f"builder {name!r} returned {type(module).__name__}, not an nn.Module")
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            recorded = {k: _plain(v, f"{name}: {k}") for k, v in bound.arguments.items()}
            setattr(module, "config", {"builder": name, "kwargs": recorded})  # noqa: B010 (mypy types Module.__setattr__ for tensors)
            return module

        _BUILDERS[name] = wrapper
        return wrapper

    return decorator


def builders() -> dict[str, Callable[..., nn.Module]]:
    """The registered builders, ``{name: builder}`` (a copy; sorted by name)."""
    return dict(sorted(_BUILDERS.items()))


def _unwrap(module: nn.Module) -> nn.Module:
    """The module a ``DistributedDataParallel``/``DataParallel`` wraps (``torch.compile``'s forwards attributes)."""
    while isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        module = module.module
    return module


def module_config(module: nn.Module) -> Config | None:
    """How ``module`` was built: ``{"builder": name, "kwargs": {...}}``, or None if no registered builder made it.

    Args:
        module: A module; a ``DistributedDataParallel``/``DataParallel`` wrapper is looked through.

    Returns:
        A deep copy of ``module.config`` (editing it does not change the module), or None
        when the module carries no config of a registered builder.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    config = getattr(_unwrap(module), "config", None)
    if not isinstance(config, Mapping) or config.get("builder") not in _BUILDERS:
        return None
    if not isinstance(config.get("kwargs"), Mapping):
        return None
    return {"builder": config["builder"], "kwargs": copy.deepcopy(dict(config["kwargs"]))}


def build(config: Mapping[str, Any]) -> nn.Module:
    """A new module built as ``config`` says (freshly initialised: load its ``state_dict`` yourself).

    Args:
        config: ``{"builder": name, "kwargs": {argument: value}}``, as :func:`module_config`
            returns and checkpoints hold (``ckpt["models"]["generator"]``).

    Returns:
        The module; its own ``config`` equals ``config``.

    Raises:
        ValueError: ``config`` is malformed, names a builder that is not registered, or
            holds arguments the builder does not take or refuses (the message names them).
    """
    if not isinstance(config, Mapping) or set(config) != {"builder", "kwargs"}:
        found = sorted(config) if isinstance(config, Mapping) else type(config).__name__
        raise ValueError(f"config must be a dict with the keys 'builder' and 'kwargs', got {found}")
    name, kwargs = config["builder"], config["kwargs"]
    if name not in _BUILDERS:
        raise ValueError(f"config names the builder {name!r}, which is not registered (known: "
                         f"{', '.join(sorted(_BUILDERS))}); a builder of your own is registered when the module "
                         "defining it is imported")
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(f"config['kwargs'] of builder {name!r} must be a dict of argument names to values, "
                         f"got {kwargs!r}")
    builder = _BUILDERS[name]
    params = inspect.signature(builder).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(f"builder {name!r} takes no argument(s) {', '.join(unknown)} (it takes "
                         f"{', '.join(params)})")
    try:
        return builder(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"builder {name!r} refused config kwargs {dict(kwargs)!r}: {err}") from err
