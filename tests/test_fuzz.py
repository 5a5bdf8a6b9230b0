"""Fuzzing the boundaries: bad arguments and bad batches raise ValueError/TypeError naming them.

Each test draws every argument from either a strategy of valid values or one of
invalid values (zero, one or two arguments corrupted per example). An example with
a corrupted argument must raise ``ValueError`` or ``TypeError`` whose message names
that argument (never an error from inside torch); an example without one must
build something that works. Hypothesis runs derandomized, so CI sees the same
examples every time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from torchgan_lite import GANStep, GANTrainer, NonFinitePolicy, StepConfig, TensorLoader, seed_everything
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.losses import penalties
from torchgan_lite.nets import mlp as models
from torchgan_lite.training.fused import FusedDiscriminatorStep

from .resume_child import single_thread

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


def _check_raises_naming(fn: Callable[[], Any], names: set[str]) -> None:
    """``fn()`` must raise ValueError/TypeError whose message names one of ``names``."""
    try:
        fn()
    except (ValueError, TypeError) as err:
        message = str(err)
        assert any(n in message for n in names), f"message does not name any of {sorted(names)}: {message}"
        return
    raise AssertionError(f"no error although {sorted(names)} were invalid")


def _draw_args(data: st.DataObject, valid: dict[str, st.SearchStrategy], invalid: dict[str, st.SearchStrategy]
               ) -> tuple[dict[str, Any], set[str]]:
    bad = data.draw(st.sets(st.sampled_from(sorted(invalid)), max_size=2), label="corrupted")
    args = {name: data.draw(invalid[name] if name in bad else valid[name], label=name) for name in valid}
    return args, bad


NOT_INTS = st.sampled_from([2.5, "8", None, True, float("nan"), [4]])
BAD_FLOATS = st.sampled_from([float("nan"), float("inf"), -float("inf"), "0.2", None, True, [0.1]])
SIZES = st.lists(st.integers(1, 12), min_size=0, max_size=2)
BAD_SIZES = st.one_of(st.sampled_from(["64", 5, None, 2.5]),
                      st.lists(st.sampled_from([0, -1, 2.0, None, "3", True]), min_size=1, max_size=2))
SHAPES = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)
BAD_SHAPES = st.one_of(st.sampled_from([(), "1x8x8", 3, None]),
                       st.lists(st.sampled_from([0, -2, 1.5, "1"]), min_size=1, max_size=3).map(tuple))


# --------------------------------------------------------------------------- builders


@FUZZ
@given(data=st.data())
def test_mlp_generator_arguments(data):
    valid = {"latent_dim": st.integers(1, 16), "hidden": SIZES, "out_shape": SHAPES,
             "negative_slope": st.floats(0, 1)}
    invalid = {"latent_dim": st.one_of(st.integers(-5, 0), NOT_INTS), "hidden": BAD_SIZES,
               "out_shape": BAD_SHAPES, "negative_slope": st.one_of(st.floats(-5, -0.01), BAD_FLOATS)}
    args, bad = _draw_args(data, valid, invalid)
    if bad:
        _check_raises_naming(lambda: models.mlp_generator(**args), bad)
        return
    g = models.mlp_generator(**args)
    out = g(torch.randn(3, args["latent_dim"]))
    assert out.shape == (3, *args["out_shape"]) and g.latent_dim == args["latent_dim"]
    assert out.abs().max() <= 1  # Tanh


@FUZZ
@given(data=st.data())
def test_mlp_discriminator_arguments(data):
    valid = {"in_shape": SHAPES, "hidden": SIZES, "dropout": st.floats(0, 0.99),
             "negative_slope": st.floats(0, 1), "fast_layers": st.booleans()}
    invalid = {"in_shape": BAD_SHAPES, "hidden": BAD_SIZES,
               "dropout": st.one_of(st.floats(1, 10), st.floats(-10, -0.01), BAD_FLOATS),
               "negative_slope": st.one_of(st.floats(-5, -0.01), BAD_FLOATS),
               "fast_layers": st.sampled_from(["no", 1, None])}
    args, bad = _draw_args(data, valid, invalid)
    if bad:
        _check_raises_naming(lambda: models.mlp_discriminator(**args), bad)
        return
    d = models.mlp_discriminator(**args)
    assert d(torch.randn(5, *args["in_shape"])).shape == (5,)


# --------------------------------------------------------------------------- losses


LOSS_FIELDS: dict[type, dict[str, tuple[st.SearchStrategy, st.SearchStrategy]]] = {
    losses.NonSaturatingLoss: {"real_label": (st.floats(0.01, 1), st.one_of(st.floats(-3, 0), st.floats(1.01, 5),
                                                                             BAD_FLOATS))},
    losses.LeastSquaresLoss: {name: (st.floats(-2, 2), BAD_FLOATS)
                              for name in ("fake_target", "real_target", "generator_target")},
    penalties.GradientPenalty: {"weight": (st.floats(0, 20), st.one_of(st.floats(-5, -0.01), BAD_FLOATS)),
                             "target": (st.floats(-2, 2), BAD_FLOATS)},
    penalties.R1Penalty: {"gamma": (st.floats(0, 20), st.one_of(st.floats(-5, -0.01), BAD_FLOATS))},
}


@FUZZ
@given(data=st.data(), cls=st.sampled_from(list(LOSS_FIELDS)))
def test_loss_arguments(data, cls):
    fields = LOSS_FIELDS[cls]
    args, bad = _draw_args(data, {k: v[0] for k, v in fields.items()}, {k: v[1] for k, v in fields.items()})
    if bad:
        _check_raises_naming(lambda: cls(**args), bad)
        return
    obj = cls(**args)
    real, fake = torch.randn(6), torch.randn(6)
    if cls in (penalties.GradientPenalty, penalties.R1Penalty):
        d = models.mlp_discriminator(in_shape=(1, 2, 2), hidden=(4,), dropout=0.0)
        value = obj(d, torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2))
    else:
        value = obj.discriminator_loss(real, fake) + obj.generator_loss(fake)
    assert value.dim() == 0 and torch.isfinite(value)


# --------------------------------------------------------------------------- TensorLoader


@FUZZ
@given(data=st.data(), n=st.integers(1, 12), extra=st.booleans())
def test_tensor_loader_arguments(data, n, extra):
    x = torch.randn(n, 1, 2, 2)
    tensors: tuple[Any, ...] = (x, torch.arange(n)) if extra else (x,)
    bad_tensors = st.sampled_from(["none", "rows", "0-d", "list", "empty"])
    valid = {"batch_size": st.integers(1, 2 * n), "shuffle": st.booleans(), "drop_last": st.booleans(),
             "generator": st.sampled_from([None, "cpu-generator"]), "rank": st.integers(0, 2),
             "world_size": st.integers(1, 3), "tensors": st.just("ok")}
    invalid = {"batch_size": st.one_of(st.integers(-3, 0), NOT_INTS),
               "generator": st.sampled_from(["seed", 5, torch.zeros(2)]),
               "rank": st.one_of(st.integers(-3, -1), st.sampled_from(["0", 0.0, True])),
               "world_size": st.one_of(st.integers(-2, 0), st.sampled_from(["2", 1.5, False])),
               "shuffle": st.sampled_from(["no", 1, None]), "drop_last": st.sampled_from(["yes", 0, None]),
               "tensors": bad_tensors}
    args, bad = _draw_args(data, valid, invalid)
    kind = args.pop("tensors")
    if args["generator"] == "cpu-generator":
        args["generator"] = torch.Generator().manual_seed(0)
    positional = {"ok": tensors, "none": (), "rows": (x, torch.arange(n + 1)), "0-d": (torch.tensor(1.0),),
                  "list": (x.tolist(),), "empty": (torch.empty(0, 3),)}[kind]
    names = {"tensors"} if "tensors" in bad else set()
    if kind == "none":
        names.add("at least one tensor")
    if kind == "empty":
        names.add("empty dataset")
    names |= bad - {"tensors"}
    # Combinations of valid values that cannot work together (whichever check comes first may report).
    def valid_(*arg_names: str) -> bool:
        return not bad & set(arg_names)

    if valid_("drop_last", "batch_size") and args["drop_last"] and args["batch_size"] > n:
        names.add("batch_size")
    if valid_("rank", "world_size"):
        if args["rank"] >= args["world_size"]:
            names |= {"rank", "world_size"}
        if valid_("drop_last") and args["world_size"] > 1 and not args["drop_last"]:
            names |= {"drop_last", "world_size"}
        if valid_("drop_last", "batch_size") and args["drop_last"] and args["batch_size"] * args["world_size"] > n:
            names.add("batch_size")
    if names:
        _check_raises_naming(lambda: TensorLoader(*positional, **args), names)
        return
    loader = TensorLoader(*positional, **args)
    batches = list(loader)
    assert len(batches) == len(loader) >= 1
    first = batches[0] if not extra else batches[0][0]
    assert first.shape[1:] == (1, 2, 2) and first.shape[0] <= args["batch_size"]
    if args["drop_last"]:
        assert all((b if not extra else b[0]).shape[0] == args["batch_size"] for b in batches)


# --------------------------------------------------------------------------- GANTrainer


class _ScalarGenerator(nn.Module):
    latent_dim = 16

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 16)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z).sum()  # not a batch


def _g() -> nn.Module:
    return models.mlp_generator(latent_dim=16, hidden=(8,), out_shape=(1, 4, 4))


def _d(**kw: Any) -> nn.Module:
    return models.mlp_discriminator(in_shape=kw.get("in_shape", (1, 4, 4)), hidden=(8,), dropout=0.3)


Factory = Callable[[dict[str, nn.Module]], Any]
TRAINER_VALID: dict[str, st.SearchStrategy] = {
    "loss": st.sampled_from([losses.NonSaturatingLoss(), losses.HingeLoss(), losses.LeastSquaresLoss(),
                             losses.WassersteinLoss(), losses.MinimaxLoss()]),
    "g_optimizer": st.sampled_from([None, "sgd-g"]),
    "d_optimizer": st.sampled_from([None, "adam-d"]),
    "latent_dim": st.sampled_from([None, 16]),
    "device": st.sampled_from(["cpu", torch.device("cpu"), "auto"]),
    "n_critic": st.integers(1, 3),
    "regularizers": st.sampled_from([(), [penalties.GradientPenalty()], (penalties.R1Penalty(1.0),)]),
    "amp": st.sampled_from([None, "bf16"]),
    "nonfinite": st.one_of(st.sampled_from(["auto", NonFinitePolicy(every=3), NonFinitePolicy(max_loss=1e6)]),
                           st.integers(0, 50)),
    "implementation": st.sampled_from(["eager", "fused", GANStep, FusedDiscriminatorStep]),
    "distributed": st.sampled_from([None, False]),
    "discriminator": st.just("ok"),
    "generator": st.just("ok"),
}
TRAINER_INVALID: dict[str, st.SearchStrategy] = {
    "loss": st.sampled_from([None, "bce", len, losses.nonsaturating_generator_loss, losses.NonSaturatingLoss]),
    "g_optimizer": st.sampled_from(["adam", "over-d", 3]),
    "d_optimizer": st.sampled_from(["over-g", torch.optim.Adam]),
    "latent_dim": st.one_of(st.integers(-3, 0), st.sampled_from([8, 2.5, "16", True])),
    "device": st.sampled_from(["gpu", "tpu", 3, None, "meta", "cuda:7", "cpu:x"]),
    "n_critic": st.one_of(st.integers(-2, 0), NOT_INTS),
    "regularizers": st.sampled_from(["gp", [1], penalties.GradientPenalty(), [None], [penalties.GradientPenalty]]),
    "amp": st.sampled_from(["fp16", "bfloat16", True, 1]),
    "nonfinite": st.one_of(st.integers(-3, -1), st.sampled_from([None, 1.5, "always", True])),
    "implementation": st.sampled_from(["GANStep", None, int, GANTrainer]),
    "distributed": st.sampled_from(["no", 0, 1]),
    "discriminator": st.sampled_from(["same-as-g", "wrong-input", "two-logits", "D"]),
    "generator": st.sampled_from(["scalar", "G", None]),
}


def _build_trainer_args(args: dict[str, Any]) -> dict[str, Any]:
    g = {"ok": _g, "scalar": _ScalarGenerator}.get(args["generator"], lambda: args["generator"])()
    d_kind = args["discriminator"]
    if d_kind == "same-as-g":
        d = g
    elif d_kind == "wrong-input":
        d = _d(in_shape=(1, 8, 8))
    elif d_kind == "two-logits":
        d = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    elif d_kind == "D":
        d = "D"
    else:
        d = _d()
    modules = {"g": g, "d": d}

    def params(module: Any) -> Any:
        return module.parameters() if isinstance(module, nn.Module) else [torch.zeros(1, requires_grad=True)]

    def optimizer(spec: Any) -> Any:
        if spec == "sgd-g":
            return torch.optim.SGD(params(g), lr=0.01)
        if spec == "adam-d":
            return torch.optim.Adam(params(d), lr=1e-3)
        if spec == "over-d":
            return torch.optim.SGD(params(d), lr=0.1)
        if spec == "over-g":
            return torch.optim.SGD(params(g), lr=0.1)
        return spec

    out = {k: v for k, v in args.items() if k not in ("generator", "discriminator")}
    out["g_optimizer"] = optimizer(args["g_optimizer"])
    out["d_optimizer"] = optimizer(args["d_optimizer"])
    return {"generator": modules["g"], "discriminator": modules["d"], **out}


NAMES = {"discriminator": {"discriminator"}, "generator": {"generator"}}
STEP_KEYS = ("n_critic", "regularizers", "amp", "nonfinite", "implementation")


def _make_trainer(kwargs: dict[str, Any]) -> GANTrainer:
    """``GANTrainer(**kwargs)`` with the step's options gathered into the one ``StepConfig``."""
    kw = dict(kwargs)
    step = StepConfig(**{k: kw.pop(k) for k in STEP_KEYS if k in kw})
    return GANTrainer(**kw, step=step)


@settings(FUZZ, max_examples=50)
@given(data=st.data())
def test_trainer_arguments(data):
    args, bad = _draw_args(data, TRAINER_VALID, TRAINER_INVALID)
    if args["device"] == "auto" and torch.cuda.is_available():
        args["device"] = "cpu"  # keep the fuzz on one device
    kwargs = _build_trainer_args(args)
    names = set().union(*(NAMES.get(b, {b}) for b in bad))
    if bad:
        _check_raises_naming(lambda: _make_trainer(kwargs), names)
        return
    trainer = _make_trainer(kwargs)
    result = trainer.train_step(torch.rand(4, 1, 4, 4) * 2 - 1)
    assert trainer.state.step == 1
    assert all(math.isfinite(v) for v in result.as_dict().values())


def test_gradient_penalty_under_bf16_autocast():
    """Found by the fuzz: the bf16 fake met the float32 real inside torch.lerp (fixed in losses.py)."""
    seed_everything(0)
    trainer = GANTrainer(_g(), _d(), losses.WassersteinLoss(),
                         step=StepConfig(regularizers=[penalties.GradientPenalty()], amp="bf16"))
    result = trainer.train_step(torch.rand(4, 1, 4, 4) * 2 - 1)
    assert all(math.isfinite(v) for v in result.as_dict().values())


# --------------------------------------------------------------------------- train_step batches


@pytest.fixture(scope="module")
def step_trainer() -> GANTrainer:
    torch.manual_seed(0)
    seed_everything(0)
    return GANTrainer(_g(), _d(), losses.NonSaturatingLoss())


DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.uint8, torch.bool,
          torch.complex64]
SHAPE_KINDS = ["ok", "flat", "missing_dim", "no_batch", "empty", "wrong_size", "scalar", "extra_dim"]
CONTAINERS = ["tensor", "tuple", "images_labels", "empty_tuple", "list_of_one", "string", "none", "numpy", "sparse",
              "meta"]


def _batch(dtype: torch.dtype, shape_kind: str, container: str, b: int, non_contiguous: bool,
           requires_grad: bool) -> Any:
    shape = {"ok": (b, 1, 4, 4), "flat": (b, 16), "missing_dim": (b, 4, 4), "no_batch": (1, 4, 4),
             "empty": (0, 1, 4, 4), "wrong_size": (b, 1, 4, 5), "scalar": (), "extra_dim": (b, 1, 1, 4, 4)}[shape_kind]
    x = (torch.rand(shape) * 2 - 1)
    if non_contiguous and x.dim() == 4:
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
    x = x.to(dtype)
    if requires_grad and x.is_floating_point():
        x.requires_grad_(True)
    return {"tensor": lambda: x, "tuple": lambda: (x,), "images_labels": lambda: [x, torch.zeros(b)],
            "empty_tuple": lambda: (), "list_of_one": lambda: [x], "string": lambda: "batch",
            "none": lambda: None, "numpy": lambda: x.detach().numpy() if dtype != torch.bfloat16 else x.tolist(),
            "sparse": lambda: x.detach().to_sparse(), "meta": lambda: x.detach().to("meta")}[container]()


@FUZZ
@given(dtype=st.sampled_from(DTYPES), shape_kind=st.sampled_from(SHAPE_KINDS), container=st.sampled_from(CONTAINERS),
       b=st.integers(1, 6), non_contiguous=st.booleans(), requires_grad=st.booleans())
def test_train_step_batches(step_trainer, dtype, shape_kind, container, b, non_contiguous, requires_grad):
    batch = _batch(dtype, shape_kind, container, b, non_contiguous, requires_grad)
    valid = dtype == torch.float32 and shape_kind == "ok" and container in ("tensor", "tuple", "images_labels",
                                                                            "list_of_one")
    before = step_trainer.state.step
    if not valid:
        _check_raises_naming(lambda: step_trainer.train_step(batch), {"real", "batch"})
        assert step_trainer.state.step == before  # a refused batch is not a step
        return
    result = step_trainer.train_step(batch)
    assert step_trainer.state.step == before + 1
    assert all(math.isfinite(v) for v in result.as_dict().values())


@pytest.mark.parametrize("make", ["sparse", "meta"])
def test_train_step_refuses_sparse_and_meta_batches(step_trainer, make):
    x = torch.rand(4, 1, 4, 4)
    batch = x.to_sparse() if make == "sparse" else x.to("meta")
    with pytest.raises((ValueError, TypeError), match="real"):
        step_trainer.train_step(batch)


@pytest.mark.parametrize("where", ["compile", "distributed", "shuffle", "drop_last", "fast_layers"])
def test_bool_flags_refuse_non_bools(where):
    with pytest.raises(TypeError, match=where):
        if where in ("shuffle", "drop_last"):
            TensorLoader(torch.zeros(8, 1), batch_size=2, **{where: "no"})
        elif where == "fast_layers":
            models.mlp_discriminator(in_shape=(1, 4, 4), hidden=(8,), fast_layers="no")
        else:
            GANTrainer(_g(), _d(), losses.NonSaturatingLoss(), **{where: "no"})


@pytest.mark.parametrize("which", ["generator", "discriminator"])
def test_networks_without_parameters_are_named(which):
    """Found by the random fuzz: torch's 'optimizer got an empty parameter list' named no network (fixed)."""
    class Fixed(nn.Module):
        latent_dim = 16

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.view(x.shape[0], 1, 4, 4) if which == "generator" else x.flatten(1).mean(1)

    g, d = (Fixed(), _d()) if which == "generator" else (_g(), Fixed())
    with pytest.raises(ValueError, match=which):
        GANTrainer(g, d, losses.NonSaturatingLoss())
