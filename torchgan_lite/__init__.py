"""torchgan_lite: small, fast, reusable GAN components for PyTorch.

The package is a tree of parts; imports run one way, top to bottom (``docs/architecture.md``):

- :mod:`torchgan_lite.utils`: argument checks, devices and seeds, process groups.
- :mod:`torchgan_lite.nets`: generator/discriminator builders, layers, spectral norm, the registry.
- :mod:`torchgan_lite.losses`: value-only losses, penalties and regularizers, augmentation.
- :mod:`torchgan_lite.data`: folders, torchvision sets and MNIST as uint8 tensors, their loaders.
- :mod:`torchgan_lite.checkpoints`: the checkpoint file format, rebuilding and exporting generators.
- :mod:`torchgan_lite.metrics`: FD, KID, precision/recall, the offline evaluator.
- :mod:`torchgan_lite.training`: :class:`GANStep` and its variants, :class:`GANTrainer`, events.
- :mod:`torchgan_lite.callbacks`: progress, checkpoints, grids, loggers, EMA, schedules, ADA, metrics.
- :mod:`torchgan_lite.recipes`: named training recipes (losses, stabilisers) built from parts.
- :mod:`torchgan_lite.cli`: the command-line tools.

Every public name is importable from here (``from torchgan_lite import GANTrainer, mlp_generator``);
this is the only module that re-exports.
"""

from torchgan_lite.callbacks.ada import AdaptiveAugment
from torchgan_lite.callbacks.checkpoint import ModelCheckpoint
from torchgan_lite.callbacks.ema import GeneratorEMA
from torchgan_lite.callbacks.loggers import (
    LOGGER_NAME,
    JSONLHistory,
    TensorBoardLogger,
    get_logger,
)
from torchgan_lite.callbacks.metrics import MetricsCallback
from torchgan_lite.callbacks.progress import EpochLogger, ProgressBar
from torchgan_lite.callbacks.reporting import (
    HISTORY_COLUMNS,
    HistoryCSV,
    LossPlot,
    SampleGrid,
    fixed_noise,
    plot_losses,
    run_info,
    save_grid,
    write_history_csv,
    write_json,
)
from torchgan_lite.callbacks.schedules import LRSchedule, ttur
from torchgan_lite.checkpoints.export import export_generator, generator_from_checkpoint, load_generator
from torchgan_lite.checkpoints.format import (
    FORMAT,
    check_keep_last,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from torchgan_lite.data.images import IMAGE_EXTENSIONS, ImageFolderDataset, ImageSet, list_images
from torchgan_lite.data.mnist import (
    DATA_ENV_VAR,
    default_cache_dir,
    mnist,
    mnist_with_labels,
    resolve_data_root,
)
from torchgan_lite.data.sources import NAMED_SETS, load_images
from torchgan_lite.data.stateful import StatefulLoader
from torchgan_lite.data.tensor_loader import TensorLoader
from torchgan_lite.losses.adversarial import (
    GANLoss,
    HingeLoss,
    LeastSquaresLoss,
    MinimaxLoss,
    NonSaturatingLoss,
    RelativisticPairingLoss,
    WassersteinLoss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    least_squares_discriminator_loss,
    least_squares_generator_loss,
    minimax_generator_loss,
    nonsaturating_discriminator_loss,
    nonsaturating_generator_loss,
    relativistic_pairing_discriminator_loss,
    relativistic_pairing_generator_loss,
    wasserstein_discriminator_loss,
    wasserstein_generator_loss,
)
from torchgan_lite.losses.augment import (
    POLICIES,
    DiffAugment,
    rand_brightness,
    rand_contrast,
    rand_cutout,
    rand_saturation,
    rand_translation,
)
from torchgan_lite.losses.penalties import (
    GradientPenalty,
    LazyRegularizer,
    LeCamRegularizer,
    R1Penalty,
    R2Penalty,
    Regularizer,
    lazy_adam_hparams,
)
from torchgan_lite.metrics.classes import class_accuracy, generator_class_accuracy
from torchgan_lite.metrics.classifier import (
    CLASSIFIER_PATH,
    CLASSIFIER_SHA256,
    FEATURE_DIM,
    NUM_CLASSES,
    MNISTClassifier,
    extract,
    file_sha256,
    load_classifier,
)
from torchgan_lite.metrics.evaluator import (
    METRIC_NAMES,
    MNISTEvaluator,
    evaluate_mnist,
)
from torchgan_lite.metrics.features import (
    FeatureExtractor,
    as_extractor,
    load_extractor,
    mnist_extractor,
    module_fingerprint,
)
from torchgan_lite.metrics.fidelity import (
    FIDELITY_EXTRACTORS,
    FidelityEvaluator,
    WeightsUnavailableError,
    fetch_command,
    fidelity_extractor_name,
    fidelity_unavailable_reason,
    is_fidelity_name,
    to_uint8_rgb,
    weights_location,
)
from torchgan_lite.metrics.frechet import SingularCovarianceWarning, feature_statistics, frechet_distance
from torchgan_lite.metrics.images import (
    IMAGE_METRICS,
    ImageEvaluator,
    distance_scores,
    real_subset,
    sample_chunks,
    to_float_images,
)
from torchgan_lite.metrics.kid import kernel_distance, mmd2_unbiased
from torchgan_lite.metrics.precision_recall import density_coverage, knn_radii, precision_recall
from torchgan_lite.metrics.reference import ReferenceStats, cached_json, cached_reference, key_digest
from torchgan_lite.metrics.scores import (
    ClassCoverage,
    class_coverage,
    class_histogram,
    classifier_score,
)
from torchgan_lite.nets.conditional import (
    ConditionalMLPDiscriminator,
    ConditionalMLPGenerator,
    conditional_mlp_discriminator,
    conditional_mlp_generator,
    digit_grid_labels,
)
from torchgan_lite.nets.dcgan import (
    IMAGE_SIZES,
    MAX_WIDTH_MULTIPLIER,
    DCGANDiscriminator,
    DCGANGenerator,
    Norm,
    dcgan_discriminator,
    dcgan_generator,
)
from torchgan_lite.nets.layers import (
    Linear,
    MaskDropout,
    layer_types,
    onednn_linear_available,
    use_onednn_linear,
)
from torchgan_lite.nets.mlp import (
    MLPDiscriminator,
    MLPGenerator,
    mlp_discriminator,
    mlp_generator,
)
from torchgan_lite.nets.registry import (
    Config,
    build,
    builders,
    module_config,
    register_builder,
)
from torchgan_lite.nets.resnet import (
    RESNET_IMAGE_SIZES,
    ResNetDiscriminator,
    ResNetGenerator,
    resnet_discriminator,
    resnet_generator,
)
from torchgan_lite.nets.resnet_blocks import ConditionalBatchNorm2d, ResidualDownBlock, ResidualUpBlock
from torchgan_lite.nets.sampling import sample_images, truncated_noise
from torchgan_lite.nets.spectral import OutputSpectralNorm, apply_spectral_norm, spectral_norm_output
from torchgan_lite.training.compiled import CompiledGANStep
from torchgan_lite.training.events import (
    Event,
    EventHandlers,
    Handler,
    RemovableHandle,
)
from torchgan_lite.training.factory import IMPLEMENTATIONS, StepConfig, build_step, default_adam
from torchgan_lite.training.fused import FusedDiscriminatorStep
from torchgan_lite.training.graphed import WARMUP_STEPS, CudaGraphStep, capture_unsupported_reason
from torchgan_lite.training.guard import (
    DeferredGuard,
    Guard,
    HostGuard,
    NoGuard,
    NonFinitePolicy,
)
from torchgan_lite.training.state import (
    EpochStats,
    NonFiniteLossError,
    StepResult,
    TrainerState,
    TrainingInterrupted,
)
from torchgan_lite.training.step import (
    DUpdate,
    GANStep,
    GradientSync,
    NoSync,
    batch_norm_in,
    optimizer_config,
    per_call_state,
    scores_in_one_call,
)
from torchgan_lite.training.trainer import GANTrainer
from torchgan_lite.utils.paths import CACHE_ENV_VAR, cache_dir
from torchgan_lite.utils.runtime import (
    cpu_bf16_instructions,
    fast_autocast,
    resolve_device,
    retain_freed_memory,
    seed_everything,
)
from torchgan_lite.utils.version import __version__

__all__ = [
    "CACHE_ENV_VAR",
    "CLASSIFIER_PATH",
    "CLASSIFIER_SHA256",
    "DATA_ENV_VAR",
    "FEATURE_DIM",
    "FIDELITY_EXTRACTORS",
    "FORMAT",
    "HISTORY_COLUMNS",
    "IMAGE_EXTENSIONS",
    "IMAGE_METRICS",
    "IMAGE_SIZES",
    "IMPLEMENTATIONS",
    "LOGGER_NAME",
    "MAX_WIDTH_MULTIPLIER",
    "METRIC_NAMES",
    "NAMED_SETS",
    "NUM_CLASSES",
    "POLICIES",
    "RESNET_IMAGE_SIZES",
    "WARMUP_STEPS",
    "AdaptiveAugment",
    "ClassCoverage",
    "CompiledGANStep",
    "ConditionalBatchNorm2d",
    "ConditionalMLPDiscriminator",
    "ConditionalMLPGenerator",
    "Config",
    "CudaGraphStep",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "DUpdate",
    "DeferredGuard",
    "DiffAugment",
    "EpochLogger",
    "EpochStats",
    "Event",
    "EventHandlers",
    "FeatureExtractor",
    "FidelityEvaluator",
    "FusedDiscriminatorStep",
    "GANLoss",
    "GANStep",
    "GANTrainer",
    "GeneratorEMA",
    "GradientPenalty",
    "GradientSync",
    "Guard",
    "Handler",
    "HingeLoss",
    "HistoryCSV",
    "HostGuard",
    "ImageEvaluator",
    "ImageFolderDataset",
    "ImageSet",
    "JSONLHistory",
    "LRSchedule",
    "LazyRegularizer",
    "LeCamRegularizer",
    "LeastSquaresLoss",
    "Linear",
    "LossPlot",
    "MLPDiscriminator",
    "MLPGenerator",
    "MNISTClassifier",
    "MNISTEvaluator",
    "MaskDropout",
    "MetricsCallback",
    "MinimaxLoss",
    "ModelCheckpoint",
    "NoGuard",
    "NoSync",
    "NonFiniteLossError",
    "NonFinitePolicy",
    "NonSaturatingLoss",
    "Norm",
    "OutputSpectralNorm",
    "ProgressBar",
    "R1Penalty",
    "R2Penalty",
    "ReferenceStats",
    "Regularizer",
    "RelativisticPairingLoss",
    "RemovableHandle",
    "ResNetDiscriminator",
    "ResNetGenerator",
    "ResidualDownBlock",
    "ResidualUpBlock",
    "SampleGrid",
    "SingularCovarianceWarning",
    "StatefulLoader",
    "StepConfig",
    "StepResult",
    "TensorBoardLogger",
    "TensorLoader",
    "TrainerState",
    "TrainingInterrupted",
    "WassersteinLoss",
    "WeightsUnavailableError",
    "__version__",
    "apply_spectral_norm",
    "as_extractor",
    "batch_norm_in",
    "build",
    "build_step",
    "builders",
    "cache_dir",
    "cached_json",
    "cached_reference",
    "capture_unsupported_reason",
    "check_keep_last",
    "class_accuracy",
    "class_coverage",
    "class_histogram",
    "classifier_score",
    "conditional_mlp_discriminator",
    "conditional_mlp_generator",
    "cpu_bf16_instructions",
    "dcgan_discriminator",
    "dcgan_generator",
    "default_adam",
    "default_cache_dir",
    "density_coverage",
    "digit_grid_labels",
    "distance_scores",
    "evaluate_mnist",
    "export_generator",
    "extract",
    "fast_autocast",
    "feature_statistics",
    "fetch_command",
    "fidelity_extractor_name",
    "fidelity_unavailable_reason",
    "file_sha256",
    "fixed_noise",
    "frechet_distance",
    "generator_class_accuracy",
    "generator_from_checkpoint",
    "get_logger",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "is_fidelity_name",
    "kernel_distance",
    "key_digest",
    "knn_radii",
    "latest_checkpoint",
    "layer_types",
    "lazy_adam_hparams",
    "least_squares_discriminator_loss",
    "least_squares_generator_loss",
    "list_images",
    "load_checkpoint",
    "load_classifier",
    "load_extractor",
    "load_generator",
    "load_images",
    "minimax_generator_loss",
    "mlp_discriminator",
    "mlp_generator",
    "mmd2_unbiased",
    "mnist",
    "mnist_extractor",
    "mnist_with_labels",
    "module_config",
    "module_fingerprint",
    "nonsaturating_discriminator_loss",
    "nonsaturating_generator_loss",
    "onednn_linear_available",
    "optimizer_config",
    "per_call_state",
    "plot_losses",
    "precision_recall",
    "rand_brightness",
    "rand_contrast",
    "rand_cutout",
    "rand_saturation",
    "rand_translation",
    "real_subset",
    "register_builder",
    "relativistic_pairing_discriminator_loss",
    "relativistic_pairing_generator_loss",
    "resnet_discriminator",
    "resnet_generator",
    "resolve_data_root",
    "resolve_device",
    "retain_freed_memory",
    "run_info",
    "sample_chunks",
    "sample_images",
    "save_checkpoint",
    "save_grid",
    "scores_in_one_call",
    "seed_everything",
    "spectral_norm_output",
    "to_float_images",
    "to_uint8_rgb",
    "truncated_noise",
    "ttur",
    "use_onednn_linear",
    "wasserstein_discriminator_loss",
    "wasserstein_generator_loss",
    "weights_location",
    "write_history_csv",
    "write_json",
]
