"""Architecture presets for BASNet.

Every preset is a :class:`BASNetConfig`; the network builder in
:mod:`basnet_cli.model.basnet` reads nothing else.  The ``basnet`` preset is
the official design of Qin et al. (CVPR 2019, ``model/BASNet.py``):
87,060,360 trainable parameters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# Decoder convolution output widths, stage 6d first, 1d last (official taper).
PAPER_DECODER = (
    (512, 512, 512),
    (512, 512, 512),
    (512, 512, 256),
    (256, 256, 128),
    (128, 128, 64),
    (64, 64, 64),
)


@dataclass(frozen=True)
class BASNetConfig:
    """Hyper-parameters of one BASNet variant.

    Attributes:
        name: preset name (also the stem of its bundled weights file).
        stem_width: output channels of the 3x3 input convolution.
        stem_bn: BatchNorm + ReLU after the input convolution (official: yes).
        encoder_blocks: basic blocks in the four ResNet stages.
        encoder_widths: channels of the four ResNet stages.
        extra_blocks: basic blocks in each of stages 5 and 6 (after a 2x2 max-pool).
        bridge_dilation: dilation of the three bridge convolutions.
        decoder_widths: output channels of the three convolutions of each decoder
            stage, 6d first.
        dilate_6d: dilate the 2nd and 3rd convolution of stage 6d by 2.
        refine_width: channels of the residual refinement module (RefUnet).
        encoder: ``"resnet"`` (the paper's ResNet stages, ``encoder_*``/``extra_blocks``) or
            ``"efficientnet-lite0"`` (an ImageNet mobile encoder for stages 2-6, see
            :mod:`basnet_cli.model.efficientnet_lite`; stage 1 is then the full-resolution
            input convolution, ``stem_width`` wide).
        bridge_width: channels of the bridge (0: the last encoder width).
        input_size: the default network input side of predict, evaluate and export for this
            preset (the size it scores best at on the DUTS-TR hold-out).
        cpu_train_bfloat16: whether ``basnet train --precision auto`` trains in mixed
            bfloat16 on a CPU with AMX/AVX512-BF16 (False where its training step was measured
            slower than float32 on such CPUs; ``make bench`` train section).
        description: one line for ``--help`` and the model card.
    """

    name: str
    stem_width: int = 64
    stem_bn: bool = True
    encoder_blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    encoder_widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    extra_blocks: int = 3
    bridge_dilation: int = 2
    decoder_widths: tuple[tuple[int, int, int], ...] = PAPER_DECODER
    dilate_6d: bool = True
    refine_width: int = 64
    encoder: str = "resnet"
    bridge_width: int = 0
    input_size: int = 256
    cpu_train_bfloat16: bool = True
    description: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BASNetConfig:
        data = dict(data)
        data["encoder_blocks"] = tuple(data["encoder_blocks"])
        data["encoder_widths"] = tuple(data["encoder_widths"])
        data["decoder_widths"] = tuple(tuple(w) for w in data["decoder_widths"])
        return cls(**data)


def scaled(config: BASNetConfig, factor: float, name: str, **changes) -> BASNetConfig:
    """Return ``config`` with every width multiplied by ``factor`` (at least 4)."""

    def s(width: int) -> int:
        return max(4, int(round(width * factor)))

    return dataclasses.replace(
        config,
        name=name,
        stem_width=s(config.stem_width),
        encoder_widths=tuple(s(w) for w in config.encoder_widths),  # type: ignore[arg-type]
        decoder_widths=tuple(tuple(s(w) for w in stage) for stage in config.decoder_widths),
        refine_width=s(config.refine_width),
        **changes,
    )


PAPER = BASNetConfig(
    name="basnet",
    description="Official BASNet (ResNet-34 encoder), 87.1M parameters.",
)

R18 = dataclasses.replace(
    PAPER,
    name="basnet-r18",
    encoder_blocks=(2, 2, 2, 2),
    description="BASNet with a ResNet-18 encoder, 77.0M parameters.",
)

LITE = scaled(
    PAPER,
    0.25,
    "basnet-lite",
    encoder_blocks=(2, 2, 2, 2),
    extra_blocks=2,
    description=(
        "Compact BASNet for CPUs and phones: every width x0.25, ResNet-18 block counts, "
        "2 blocks in stages 5-6 (23x fewer MACs than the paper preset)."
    ),
)

# Only for tests: the same topology at toy widths, trains in seconds.
TINY = scaled(
    PAPER,
    0.0625,
    "basnet-tiny",
    encoder_blocks=(1, 1, 1, 1),
    extra_blocks=1,
    description="Toy widths for tests and smoke runs; not for real use.",
)

# The network as built by the keras-io example / keras-cv / keras-hub: a 512-wide decoder
# without the taper, no dilation in 6d, no BN/ReLU after the input conv.  Only used as the
# speed peer in benchmarks.
KERAS_IO = dataclasses.replace(
    PAPER,
    name="basnet-kerasio",
    stem_bn=False,
    dilate_6d=False,
    decoder_widths=((512, 512, 512),) * 6,
    description="Peer design of keras-io/keras-cv (512-wide decoder), benchmarks only.",
)

# BASNet's predict-refine design on an ImageNet-pretrained EfficientNet-Lite0 encoder: a
# full-resolution input convolution as stage 1, Lite0's stride-2..32 features as stages 2-6, a
# narrow tapered decoder with a side output per stage, and the residual refinement module.
MOBILE = BASNetConfig(
    name="basnet-mobile",
    stem_width=16,
    encoder="efficientnet-lite0",
    encoder_blocks=(0, 0, 0, 0),
    encoder_widths=(16, 24, 40, 112),
    extra_blocks=0,
    bridge_width=128,
    decoder_widths=(
        (128, 128, 128),
        (128, 128, 96),
        (96, 96, 64),
        (64, 64, 32),
        (32, 32, 16),
        (16, 16, 16),
    ),
    refine_width=16,
    input_size=256,
    cpu_train_bfloat16=False,
    description=(
        "BASNet decoder and refinement on an ImageNet EfficientNet-Lite0 encoder "
        "(the default model)."
    ),
)

# Only for tests: the mobile topology (same encoder) with a toy decoder.
MOBILE_TINY = dataclasses.replace(
    MOBILE,
    name="basnet-mobile-tiny",
    stem_width=4,
    bridge_width=8,
    decoder_widths=((8, 8, 8),) * 3 + ((8, 8, 4),) * 3,
    refine_width=4,
    description="Toy decoder on the mobile encoder, for tests only.",
)

PRESETS: dict[str, BASNetConfig] = {
    c.name: c for c in (PAPER, R18, LITE, MOBILE, TINY, MOBILE_TINY, KERAS_IO)
}

# Presets shown to users (the tiny ones and the keras-io peer exist for tests and benchmarks).
PUBLIC_PRESETS = ("basnet-mobile", "basnet", "basnet-r18", "basnet-lite")

DEFAULT_PRESET = "basnet-mobile"

# Network input side of predict, evaluate and export for a model whose preset is unknown (a
# .keras file): the official test script resizes every photo to 256x256, the scale the 2019
# recipe trains at (resize 256, crop 224). A preset's own default is its ``input_size``.
DEFAULT_SIZE = 256


def size_help() -> str:
    """``224 for basnet-mobile, 256 for the others`` (for ``--size`` help texts)."""
    sizes: dict[int, list[str]] = {}
    for name in PUBLIC_PRESETS:
        sizes.setdefault(PRESETS[name].input_size, []).append(name)
    parts = [f"{size} for {', '.join(names)}" for size, names in sizes.items()]
    return "; ".join(parts) + f"; {DEFAULT_SIZE} for a .keras file"


def get_preset(name: str) -> BASNetConfig:
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(PRESETS)
        raise ValueError(f"unknown preset {name!r}; known presets: {known}") from None
