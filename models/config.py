"""The model configuration as data: architecture, preprocessing, cascade and training settings (JSON).

A model folder carries its config.json; `ichvol train --config FILE` takes the same format. Named configs
ship in models/configs/<name>.json: "paper" (the published full-width network, for GPUs) and "small" (the
CPU model that ships).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path

from ichvol.errors import ConfigError
from ichvol.labels import NUM_CLASSES, Hemorrhage


@dataclass(frozen=True)
class Window:
    """An HU window mapped linearly to [0, 1] (values outside are clipped)."""

    level: float
    width: float


@dataclass(frozen=True)
class Preprocessing:
    # One input channel per window. The blood window (level 40, width 90) alone would clip calcification
    # (100-400 HU) and bone to the same value as dense blood; the wide second window keeps them apart.
    windows: tuple[Window, ...] = (Window(40.0, 90.0), Window(400.0, 1000.0))
    head_threshold_hu: float = -300.0  # voxels above it count as head (skin, bone, brain) for the head crop
    head_margin_mm: float = 5.0


@dataclass(frozen=True)
class StageConfig:
    """One DynUNet stage. strides[0] is the stem (no downsampling); each later entry downsamples one level."""

    patch_size: tuple[int, int, int]  # (z, y, x)
    filters: tuple[int, ...]
    strides: tuple[tuple[int, int, int], ...]
    deep_supr_num: int = 2
    in_plane_spacing_mm: float | None = None  # stage 1 only: in-plane resampling of the head crop
    # Stage 2 only: a ROI is resized in-plane to the patch size, or larger where that would make its pixels
    # coarser than this (thin subdural films and sulcal blood vanish at 2 mm pixels); None: always the patch.
    roi_max_spacing_mm: float | None = None
    # Per-level conv kernels; None: 3x3x3 everywhere. (1, 3, 3) on the top levels follows nnU-Net for thick
    # slices (in-plane pixels much finer than the slice spacing) and costs a third.
    kernels: tuple[tuple[int, int, int], ...] | None = None
    training_patch_size: tuple[int, int, int] | None = None  # random crops for training; None: patch_size

    def __post_init__(self) -> None:
        if len(self.filters) != len(self.strides):
            raise ConfigError(f"stage has {len(self.filters)} filter counts but {len(self.strides)} strides")
        if self.kernels is not None and len(self.kernels) != len(self.strides):
            raise ConfigError(f"stage has {len(self.kernels)} kernels but {len(self.strides)} strides")
        factor = [1, 1, 1]
        for stride in self.strides:
            factor = [f * s for f, s in zip(factor, stride, strict=True)]
        for patch in (self.patch_size, self.crop_size):
            if any(p % f for p, f in zip(patch, factor, strict=True)):
                raise ConfigError(f"patch size {patch} is not divisible by the total downsampling {factor}")

    @property
    def crop_size(self) -> tuple[int, int, int]:
        return self.training_patch_size or self.patch_size

    @property
    def kernel_sizes(self) -> tuple[tuple[int, int, int], ...]:
        return self.kernels or tuple((3, 3, 3) for _ in self.strides)

    @property
    def bottleneck_shape(self) -> tuple[int, int, int]:
        shape = list(self.patch_size)
        for stride in self.strides:
            shape = [s // d for s, d in zip(shape, stride, strict=True)]
        return tuple(shape)


@dataclass(frozen=True)
class CascadeSettings:
    roi_margin_mm: float = 10.0  # enlargement of stage 1's hemorrhage region before cropping
    roi_margin_slices: int = 1
    min_roi_voxels: int = 4  # stage-1 components smaller than this (coarse voxels) are ignored
    # Stage 1 only has to find where to look: a coarse voxel counts when its hemorrhage probability (1 - p(bg))
    # reaches this. Below 0.5 favours recall; stage 2 removes what is not blood.
    stage1_min_probability: float = 0.5
    # Stage 2: a voxel is hemorrhage when 1 - p(bg) reaches this, of the most probable type. Plain argmax
    # loses voxels whose hemorrhage probability is split between types.
    stage2_min_probability: float = 0.5
    # Post-processing: a predicted connected component whose median HU lies outside this range (acute blood is
    # about 50-90 HU) is dropped; it removes findings in bone partial volume. None: off (the paper has none).
    component_median_hu: tuple[float, float] | None = None
    # Post-processing: a predicted connected component that lies against bone (within BONE_CONTACT_MM in-plane of
    # calcified bone) and over which stage 1's hemorrhage probability (interpolated to the full grid) averages
    # under this is dropped. Stage 2 sees only its ROI; stage 1 sees the whole head. What stage 2 alone calls blood
    # against bone is mostly partial volume (the slice through the vertex, the inner table); away from bone it
    # is kept, as small bleeds vanish at stage 1's coarse pixels. 0: off.
    min_stage1_support_near_bone: float = 0.0
    # Post-processing: a predicted component of one of `film_types` (its most common type) that lies against bone
    # and of whose voxels fewer than this fraction lie `film_depth_mm` or more in-plane from bone is dropped. The
    # blurred inner edge of the skull reads 60-110 HU for a millimetre or two; stage 2 calls it a film of subdural
    # blood, which a real collection thick enough to matter is not. 0: off.
    min_film_depth_fraction: float = 0.0
    film_depth_mm: float = 2.0
    film_types: tuple[str, ...] = ("SDH", "EDH")
    # Post-processing: a component that the support or the film rule would drop is kept when the band just inside
    # the inner table reads at least this many HU brighter beside it than at the mirror position across the head
    # (`side_contrast_hu`). A radiologist compares the sides: the skull's blurred edge, which the two rules are
    # for, is about as bright on both, a thin collection brightens one. None: off.
    min_side_contrast_hu: float | None = None
    # Post-processing: a predicted connected component smaller than this (ml) is dropped: specks of a few
    # voxels are noise, far below any volume a radiologist reports. 0: off.
    min_component_ml: float = 0.0
    # Post-processing: the one-pixel in-plane ring around predicted hemorrhage joins it where its HU lies in
    # this range. Stage 2 predicts on a coarser in-plane grid (roi_max_spacing_mm); resampled back and
    # thresholded, its mask ends about one native pixel short of the edge. The range keeps the rim to voxels
    # dense enough to hold blood, partial volume with bone included, and out of dense bone. None: off.
    rim_growth_hu: tuple[float, float] | None = None
    # The types whose rim grows ("SDH", "EDH", ...); None: all. Extra-axial blood lies against bone, where the
    # partial-volume edge is widest.
    rim_growth_types: tuple[str, ...] | None = None
    # Post-processing: a region typed subdural or epidural that touches no bone takes the most common other type
    # that borders it (models/postprocess.py): extra-axial blood lies against the inner table, and such voxels
    # inside a parenchymal bleed are a typing error of the networks. The total is unchanged.
    retype_detached_extra_axial: bool = False
    # Post-processing: a hemorrhage voxel this dense or denser (HU) is cleared: it reads as bone (the skull's
    # blurred edge, the vertex cut by a thick slice, calcification), which blood never does. Applied last, so
    # the rim growth stops there too. None: off.
    max_voxel_hu: float | None = None
    # Post-processing: hemorrhage outside the cranial cavity (scalp, face, neck, bone) is cleared; the cavity
    # is found from the skull in each slice (models/postprocess.py).
    intracranial_gate: bool = True
    # Input check: an image in which no slice shows a cranial cavity (soft tissue of brain-like density enclosed
    # by bone) is refused (NotAHeadCTError) before the networks run. Phantoms whose "brain" is air, skull-stripped
    # and non-head images would otherwise get a volume that means nothing.
    require_cranial_cavity: bool = True
    merge_distance_mm: float = 30.0  # ROIs closer than this are merged into one box
    # Stage 2 also sweeps the whole head crop (squared, at the pixels a ROI that large gets), and what it finds
    # outside every ROI joins the ROIs' findings before the rules. Stage 1's 3.4 mm pixels average a thin film
    # against the skull into bone, so no ROI reaches it; stage 2 sees it. Inside the ROIs their own, finer
    # verdict stands. The type network does not take part (it is for types; the sweep is for what no ROI holds).
    head_sweep: bool = False
    sliding_window_overlap: float = 0.5
    # Windows per forward pass of the sliding window: on 2 CPU threads a batch of 4 costs about half as much per
    # window as one at a time. The results are the same to float rounding.
    sliding_window_batch_size: int = 1
    blend_mode: str = "constant"  # averaged overlaps, as in the paper
    mirror_tta: bool = False
    # Which type a hemorrhage voxel gets: False, stage 2's most probable type; True, the type both stages agree
    # on most (product of their type probabilities). Stage 1 sees the whole head, where a bleed lies (against
    # the skull, in a ventricle, in the parenchyma); stage 2 sees only its ROI.
    stage1_type_prior: bool = False
    # The types whose split the prior weighs (None: all). ["SDH", "EDH"]: crescent or lens is a matter of the whole
    # collection, which stage 1 sees; whether blood is parenchymal, ventricular or subarachnoid, stage 2's finer
    # pixels tell better, and stage 1's coarse types would overrule it.
    stage1_type_prior_types: tuple[str, ...] | None = None
    # A second use of the prior (with `stage1_type_prior` on), after the first: a voxel whose type is one of these
    # keeps a type among them, the one of most stage 2 x stage 1 ** `stage1_type_split_exponent`. ["IPH", "IVH"]:
    # stage 2's 1 mm pixels see blood but not always the ventricle wall it crosses; stage 1 sees where in the head
    # the blood lies. Stage 1 is sure of its types (near 0 or 1), hence an exponent well under 1: a nudge where
    # stage 2 hesitates. Other types are never moved into or out of the group. None: off.
    stage1_type_split_types: tuple[str, ...] | None = None
    stage1_type_split_exponent: float = 1.0
    # A second stage-2 network (`stage2_types.pt` in the model folder, stage 2's architecture: a fine-tuning toward
    # the types stage 2 confuses) settles the type of the voxels stage 2 types one of these: the one of most
    # geometric mean of the two networks' type probabilities, which the split above then weighs. Which voxels are
    # hemorrhage, and which hold one of these types, stays stage 2's alone; types the rules tell apart (SDH and EDH
    # for the film rule) are refused, so the mask changes only where a component of mixed types gets another most
    # common type (which the film rule reads). None: off, and no file.
    type_ensemble_types: tuple[str, ...] | None = None
    # The type network may also grow stage 2's findings with blood of these types: a voxel under
    # `stage2_min_probability` for stage 2 that the type network calls blood of one of these, as surely, where stage
    # 1's hemorrhage probability reaches `type_network_min_stage1_support`, takes the type network's verdict when its
    # region touches what stage 2 found in the ROI. ["SAH"]: a network fine-tuned toward SAH finds more of the
    # diffuse SAH stage 2 finds only in part; the support and the contact keep it from the real cortex a synthetic
    # SAH resembles (the real GE head CT). The added voxels then meet every rule. None: off.
    type_network_adds_types: tuple[str, ...] | None = None
    type_network_min_stage1_support: float = 0.0
    type_threshold_ml: float = 0.1  # a type counts for the study's type when its volume passes this

    def __post_init__(self) -> None:
        self.rim_growth_labels  # noqa: B018 - parsing raises ValueError naming an unknown type
        object.__setattr__(self, "film_types", tuple(self.film_types))  # a JSON list compares equal after a round trip
        self.film_labels  # noqa: B018
        if self.stage1_type_prior_types is not None:
            object.__setattr__(self, "stage1_type_prior_types", tuple(self.stage1_type_prior_types))
            self.stage1_type_prior_labels  # noqa: B018
        if self.stage1_type_split_types is not None:
            object.__setattr__(self, "stage1_type_split_types", tuple(self.stage1_type_split_types))
            self.stage1_type_split_labels  # noqa: B018
            if not self.stage1_type_prior:
                raise ValueError("stage1_type_split_types needs stage1_type_prior: the split weighs by stage 1's types")
            if len(self.stage1_type_split_labels) < 2:
                raise ValueError("stage1_type_split_types: name two or more types to split between")
        if self.type_ensemble_types is not None:
            object.__setattr__(self, "type_ensemble_types", tuple(self.type_ensemble_types))
            if len(self.type_ensemble_labels) < 2:
                raise ValueError("type_ensemble_types: name two or more types to settle between")
            self._check_rules_treat_alike(self.type_ensemble_types)
        if self.type_network_adds_types is not None:
            object.__setattr__(self, "type_network_adds_types", tuple(self.type_network_adds_types))
            self.type_network_adds_labels  # noqa: B018
        if not 0.0 <= self.type_network_min_stage1_support <= 1.0:
            raise ValueError("type_network_min_stage1_support is a probability (0 to 1), got "
                             f"{self.type_network_min_stage1_support}")
        if self.sliding_window_batch_size < 1:
            raise ValueError(f"sliding_window_batch_size must be 1 or more, got {self.sliding_window_batch_size}")
        if self.stage1_type_split_exponent <= 0:
            raise ValueError(f"stage1_type_split_exponent must be positive, got {self.stage1_type_split_exponent}")

    def _check_rules_treat_alike(self, types: tuple[str, ...]) -> None:
        """A second network may move voxels between `types` only where no rule tells them apart: otherwise the
        mask would change with their type."""
        if set(types) & set(self.film_types):
            raise ValueError(f"type_ensemble_types: {', '.join(sorted(set(types) & set(self.film_types)))} is "
                             "judged by the film rule; moving voxels into or out of it would change the mask")
        if self.rim_growth_types is not None and 0 < len(set(types) & set(self.rim_growth_types)) < len(set(types)):
            raise ValueError("type_ensemble_types: the rim grows around some of these types only "
                             "(rim_growth_types); moving voxels between them would change the mask")

    @property
    def film_labels(self) -> tuple[int, ...]:
        return _type_labels(self.film_types)

    @property
    def stage1_type_prior_labels(self) -> tuple[int, ...] | None:
        return None if self.stage1_type_prior_types is None else _type_labels(self.stage1_type_prior_types)

    @property
    def stage1_type_split_labels(self) -> tuple[int, ...] | None:
        return None if self.stage1_type_split_types is None else _type_labels(self.stage1_type_split_types)

    @property
    def type_ensemble_labels(self) -> tuple[int, ...] | None:
        return None if self.type_ensemble_types is None else _type_labels(self.type_ensemble_types)

    @property
    def type_network_adds_labels(self) -> tuple[int, ...] | None:
        return None if self.type_network_adds_types is None else _type_labels(self.type_network_adds_types)

    @property
    def uses_type_network(self) -> bool:
        """Whether the model folder holds a type network (`stage2_types.pt`)."""
        return self.type_ensemble_types is not None or self.type_network_adds_types is not None

    @property
    def rim_growth_labels(self) -> tuple[int, ...] | None:
        return None if self.rim_growth_types is None else _type_labels(self.rim_growth_types)


def _type_labels(names: tuple[str, ...]) -> tuple[int, ...]:
    """Hemorrhage type names ("SDH", ...) as label values; an unknown name raises ValueError."""
    return tuple(int(t) for t in Hemorrhage.parse_list(",".join(names)))


@dataclass(frozen=True)
class TrainingSettings:
    seed: int = 0
    epochs: int = 50
    iterations_per_epoch: int = 50
    batch_size: int = 2
    learning_rate: float = 1e-2
    weight_decay: float = 3e-5
    restart_epochs: int = 10  # CosineAnnealingWarmRestarts T_0
    positive_fraction: float = 0.67  # share of crops centred on hemorrhage
    validation_fraction: float = 0.15
    rotation_degrees: float = 30.0
    stage2_negative_rois_per_case: int = 1  # hemorrhage-free boxes so stage 2 learns to reject stage 1's mistakes
    # Every this many epochs (and at the last) run the whole cascade on the validation cases, the other stage
    # with its kept weights, and keep the weights with the best cascade DSC (models/validation.py); also the
    # starting weights of a fine-tuning. 0: off, the stage's own validation Dice chooses. Used where the
    # other stage's weights are fixed: stage 2 after stage 1, or one stage fine-tuned with the other unchanged.
    cascade_validation_every: int = 0


# The settings that say how a trained model is applied rather than what its networks are: changing them leaves
# the weights valid, so `ichvol evaluate --set` may override them (the architecture, the input windows and the
# training settings may not be).
INFERENCE_STAGE_KEYS = ("patch_size", "in_plane_spacing_mm", "roi_max_spacing_mm")


@dataclass(frozen=True)
class ModelConfig:
    name: str
    version: str
    stage1: StageConfig
    stage2: StageConfig
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    cascade: CascadeSettings = field(default_factory=CascadeSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    num_classes: int = NUM_CLASSES

    @property
    def in_channels(self) -> int:
        return len(self.preprocessing.windows)

    def stage(self, number: int) -> StageConfig:
        """The settings of stage `number` (1: coarse, 2: fine)."""
        return self.stage1 if number == 1 else self.stage2

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def with_training(self, **changes) -> ModelConfig:
        from dataclasses import replace

        return replace(self, training=replace(self.training, **changes))

    def with_inference_settings(self, settings: Mapping[str, object]) -> ModelConfig:
        """This config with inference settings replaced, each named "cascade.<key>" or
        "stage1|stage2.<key>" (a key of INFERENCE_STAGE_KEYS), its value as JSON gives it. The result is
        checked as a config file is; ConfigError names a key that is unknown or that the weights depend on."""
        data = self.to_dict()
        for name, value in settings.items():
            section, _, key = name.partition(".")
            if section == "cascade" and key:
                known = {f.name: f.type for f in fields(CascadeSettings)}
            elif section in ("stage1", "stage2") and key in INFERENCE_STAGE_KEYS:
                known = {f.name: f.type for f in fields(StageConfig) if f.name in INFERENCE_STAGE_KEYS}
            else:
                raise ConfigError(f"{name}: not an inference setting; expected cascade.<key>, or stage1.<key> or "
                                  f"stage2.<key> with <key> one of {', '.join(INFERENCE_STAGE_KEYS)} (the "
                                  "architecture, input windows and training settings belong to the trained model)")
            if key not in known:
                raise ConfigError(f"{name}: unknown setting; {section} has {', '.join(sorted(known))}")
            _check_kind(name, value, str(known[key]))
            data[section][key] = value
        return ModelConfig.from_dict(data, source="the overridden settings")

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> ModelConfig:
        try:
            return ModelConfig(
                name=str(data["name"]),
                version=str(data["version"]),
                stage1=_stage(data["stage1"]),
                stage2=_stage(data["stage2"]),
                preprocessing=_preprocessing(data.get("preprocessing", {})),
                cascade=_plain(CascadeSettings, data.get("cascade", {})),
                training=_plain(TrainingSettings, data.get("training", {})),
                num_classes=int(data.get("num_classes", NUM_CLASSES)),
            )
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        except KeyError as exc:
            raise ConfigError(f"{source}: missing key {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {exc}") from exc

    @classmethod
    def from_file(cls, path: Path) -> ModelConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_dict(data, source=str(path))


def _check_kind(name: str, value: object, annotation: str) -> None:
    """A replacement value is of the kind its field is declared as (`annotation`, as the dataclass writes it):
    a list, a number, a flag or a string, or null where the field may be unset."""
    if value is None:
        if "None" not in annotation:
            raise ConfigError(f"{name}: may not be null")
        return
    kinds = ((("tuple",), "a list", lambda v: isinstance(v, list | tuple)),
             (("float", "int"), "a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
             (("bool",), "true or false", lambda v: isinstance(v, bool)),
             (("str",), "a string", lambda v: isinstance(v, str)))
    for declared, described, matches in kinds:
        if annotation.startswith(declared) and not matches(value):
            raise ConfigError(f"{name}: expected {described}, got {value!r}")


def _plain(kind, data: dict):
    known = {f.name: f.type for f in fields(kind)}
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"unknown {kind.__name__} keys: {', '.join(sorted(unknown))}")
    for key, value in data.items():
        _check_kind(key, value, str(known[key]))
    return kind(**data)


def _stage(data: dict) -> StageConfig:
    data = dict(data)
    data["patch_size"] = tuple(int(v) for v in data["patch_size"])
    data["filters"] = tuple(int(v) for v in data["filters"])
    data["strides"] = tuple(tuple(int(s) for s in stride) for stride in data["strides"])
    if data.get("kernels") is not None:
        data["kernels"] = tuple(tuple(int(k) for k in kernel) for kernel in data["kernels"])
    if data.get("training_patch_size") is not None:
        data["training_patch_size"] = tuple(int(v) for v in data["training_patch_size"])
    return _plain(StageConfig, data)


def _preprocessing(data: dict) -> Preprocessing:
    data = dict(data)
    if "windows" in data:
        data["windows"] = tuple(Window(float(w["level"]), float(w["width"])) for w in data["windows"])
    return _plain(Preprocessing, data)


def named_configs() -> list[str]:
    folder = resources.files("ichvol.models") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def load_config(name_or_path: str | Path) -> ModelConfig:
    """A named config ("paper", "small") or a JSON file."""
    text = str(name_or_path)
    if text in named_configs():
        resource = resources.files("ichvol.models") / "configs" / f"{text}.json"
        return ModelConfig.from_dict(json.loads(resource.read_text()), source=f"config {text!r}")
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"{text}: neither a named config ({', '.join(named_configs())}) nor a JSON file")
    return ModelConfig.from_file(path)
