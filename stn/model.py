"""ST-CNN classifiers: a spatial transformer in front of a small CNN, and the plain CNN baseline."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stn.conv import InputGradConv2d
from stn.localization import positive_int, positive_ints, positive_number
from stn.transformer import SpatialTransformer, check_input
from stn.transforms import affine_embedding, get, names

__all__ = ["SURE", "LIGHT_GROUND", "ModelConfig", "STClassifier", "Prediction", "ConvClassifier", "change_transform"]

# Below this top probability a reading is a guess, and is shown as one (so is one whose top logit is under the
# model's calibrated floor, ``STClassifier.sure_logit``: stn.calibration). wild-affine, the app's default,
# stays under it for 20 of 2,960 upload-style digits (sketches, handwriting fonts, photos, cropped) and for
# most smooth photo-like scenes with no digit (26 of the 37 it does not refuse); rts-affine is surer of such
# pictures. bench/README.md, fifteenth pass.
SURE = 0.6


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; stored in its model card.

    ``transform=None`` is the plain CNN baseline (no transformer). With ``heads > 1`` each head
    reads one digit with the shared classifier (the Pair model: head k reads digit k), and the
    model's classes are the ``n_classes ** heads`` digit strings.
    """

    dataset: str
    input_size: tuple[int, int]
    transform: str | None = "affine"
    transform_options: dict = field(default_factory=dict)
    heads: int = 1
    crop_size: tuple[int, int] = (28, 28)
    localization: str = "cnn"
    loc_options: dict = field(default_factory=dict)
    bound: bool = True
    start_scale: float = 1.0  # θ starts at the centred window of this size (1.0: identity)
    channels: tuple[int, int] = (32, 64)
    hidden: int = 256
    n_classes: int = 10
    # Typical longer side of a digit's ink, in canvas pixels, in the training data:
    # pre-processing scales uploads to it so that inference sees what training saw.
    digit_size: float = 20.0

    def __post_init__(self) -> None:
        _check_config(self)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        for key in ("input_size", "crop_size", "channels"):
            if key in d and d[key] is not None:
                d[key] = tuple(d[key])
        return cls(**d)


def _check_config(config: ModelConfig) -> None:
    """Refuse a field that cannot make a model with a sentence naming it, not a layer's complaint later
    (or, for a fractional count, a model built wrong)."""
    # whole floats (a card's JSON, 28.0) kept as ints: the layers' sizes are built from them
    config.input_size = positive_ints(config.input_size, 2, "input_size (H, W)", (28, 28))
    config.crop_size = positive_ints(config.crop_size, 2, "crop_size (H, W)", (28, 28))
    config.channels = positive_ints(config.channels, 2, "channels (conv1, conv2)", (32, 64))
    if config.transform is not None and config.transform not in names():
        raise ValueError(f"Unknown transform {config.transform!r}. Known: {', '.join(names())}, "
                         "or None for the CNN baseline.")
    for key in ("transform_options", "loc_options"):
        if not isinstance(getattr(config, key), Mapping):
            raise TypeError(f"{key} must be a dict of options, got {type(getattr(config, key)).__name__}: e.g. {{}}")
    positive_int(config.heads, "heads", "the digits read, one transformer each: 1, or 2 for Pair")
    positive_int(config.hidden, "hidden", "the classifier's hidden width, e.g. 256")
    positive_int(config.n_classes, "n_classes", "the classes each head tells apart, e.g. 10 (digits)")
    positive_number(config.digit_size, "digit_size", "a digit's typical longer side in training canvas pixels, "
                    "e.g. 20.0 (MNIST's)")


class ConvClassifier(nn.Module):
    """conv 5×5 → BN → ReLU → pool 2 → conv 5×5 → BN → ReLU → pool 2 → FC → ReLU → dropout → FC.

    >>> ConvClassifier((1, 28, 28))(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self, in_shape: tuple[int, int, int], channels: tuple[int, int] = (32, 64), hidden: int = 256, n_classes: int = 10
    ) -> None:
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            InputGradConv2d(in_shape[0], c1, 5, bias=False),  # in an ST-CNN the gradient flows into the crop
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *in_shape)).numel()
        self.head = nn.Sequential(
            nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Dropout(0.3), nn.Linear(hidden, n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → logits ``(B, n_classes)``."""
        return self.head(self.features(x))


@dataclass
class Prediction:
    """What :meth:`STClassifier.predict` returns for a batch of B images."""

    labels: torch.Tensor  # (B,) class index; for Pair models the number the digits spell
    probs: torch.Tensor  # (B, classes)
    params: list[torch.Tensor]  # one (B, n_params) per head; empty for the CNN baseline
    crops: list[torch.Tensor]  # one (B, 1, h, w) per head; the input itself for the baseline
    head_probs: torch.Tensor  # (B, heads, n_classes): each head's own reading
    top_logits: torch.Tensor | None = None  # (B,): each head's largest logit, the least over heads
    sure_logit: float | None = None  # the model's calibrated floor for ``top_logits`` (stn.calibration), if any

    @property
    def weak(self) -> torch.Tensor:
        """``(B,)`` bool: the evidence for every class is weak (``top_logits`` under ``sure_logit``): the
        input is unlike the digits the model knows, whatever its softmax says (a photo, an icon)."""
        if self.sure_logit is None or self.top_logits is None:
            return torch.zeros(self.probs.shape[0], dtype=torch.bool)
        return self.top_logits < self.sure_logit

    @property
    def sure(self) -> torch.Tensor:
        """``(B,)`` bool: the top probability is at least :data:`SURE` and the evidence is not
        :attr:`weak` (else the label is a guess)."""
        return (self.probs.amax(dim=1) >= SURE) & ~self.weak

    def class_names(self) -> list[str]:
        """``B`` labels as text: what each head read, first head first (a Pair model's 7 is ``"07"``), with
        the number of classes per head taken from ``head_probs`` ``(B, heads, n_classes)``."""
        _, heads, n_classes = self.head_probs.shape
        return [_label_text(int(i), heads, n_classes) for i in self.labels]


def _label_text(label: int, heads: int, n_classes: int) -> str:
    """A joint class index as each head's class, first head first: its ``heads`` digits in base ``n_classes``
    (``predict`` flattens the heads' joint probabilities in that order), joined by "-" where a class has
    more than one character (``n_classes`` > 10)."""
    classes = []
    for _ in range(heads):
        label, c = divmod(label, n_classes)
        classes.append(str(c))
    return ("" if n_classes <= 10 else "-").join(reversed(classes))


class STClassifier(nn.Module):
    """Spatial transformer (optional) + :class:`ConvClassifier` on each warped crop."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        h, w = config.input_size
        if config.transform is None:
            self.st = None
            cls_in = (1, h, w)
        else:
            self.st = SpatialTransformer(
                (1, h, w),
                get(config.transform, **config.transform_options),
                out_size=config.crop_size,
                heads=config.heads,
                localization=config.localization,
                loc_options=config.loc_options,
                bound=config.bound,
                start_scale=config.start_scale,
            )
            cls_in = (1, *config.crop_size)
        self.classifier = ConvClassifier(cls_in, config.channels, config.hidden, config.n_classes)
        # NHWC: on the CPU, max-pooling an NCHW tensor is several times slower than an NHWC one
        # and oneDNN's convolutions prefer it too; the ST-CNN runs 1.3-2x faster (bench/README.md).
        self.to(memory_format=torch.channels_last)
        self._traced: dict = {}  # see trace_for_inference; not a submodule, not in the state dict
        # The least top logit of a reading it is sure of, calibrated on upload-style digits (stn.calibration);
        # the zoo sets it from the model card. None: the probability alone decides.
        self.sure_logit: float | None = None

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.config.input_size)

    @property
    def heads(self) -> int:
        return 1 if self.st is None else self.config.heads

    @property
    def n_outputs(self) -> int:
        """Number of classes of the whole model (``n_classes ** heads``)."""
        return self.config.n_classes**self.heads

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """``(B, 1, H, W)`` → logits ``(B, heads, n_classes)``, crops and θ per head."""
        if not torch.jit.is_tracing():  # before the layout change, which has its own words for a 3-D input
            self._check_input(x)
        nhwc = x.contiguous(memory_format=torch.channels_last)
        if self.st is None:
            return self.classifier(nhwc).unsqueeze(1), [x], []
        crops, params = self.st.forward_heads(nhwc)
        if len(crops) == 1:  # one operation fewer than the view and transpose below (batch 1: each counts)
            return self.classifier(crops[0].contiguous(memory_format=torch.channels_last)).unsqueeze(1), crops, params
        batch = torch.cat(crops, dim=0).contiguous(memory_format=torch.channels_last)
        logits = self.classifier(batch)  # one pass for all heads
        return logits.view(len(crops), x.shape[0], logits.shape[-1]).transpose(0, 1), crops, params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` → logits ``(B, heads, n_classes)``."""
        return self.forward_all(x)[0]

    def _check_input(self, x: torch.Tensor) -> None:
        """The sentences :class:`SpatialTransformer` says of an input it cannot read, for every model
        (a CNN baseline has no transformer to say them)."""
        name = getattr(self, "name", None)
        check_input(x, (1, *self.input_size), self.classifier.head[-1].weight.dtype,
                    what=f"this model{f' ({name})' if name else ''}", weights="the model's weights",
                    fix="use stn.preprocess(image, model) to prepare an image")

    @staticmethod
    def _weights_key(tensors: list[torch.Tensor]) -> tuple:
        """Changes when a weight is written in place (an optimiser step, a load) or replaced (``.to()``)."""
        return tuple((t._version, t.data_ptr()) for t in tensors)

    @torch.no_grad()
    def trace_for_inference(self, batch: int = 1, atol: float = 1e-4) -> bool:
        """Freeze a TorchScript copy of the eval-mode forward for inputs ``(batch, 1, *input_size)``.

        :meth:`predict` then runs it for inputs of exactly that shape, device and dtype (float32), as
        long as the weights are unchanged. Why: at batch 1 the eager forward is mostly Python and
        dispatch overhead, all of it under the GIL; the frozen graph folds batch norm into the
        convolutions, runs ~1.5x faster on one CPU core and releases the GIL for the whole forward,
        so a server's other threads keep running (``bench/README.md``). The copy is checked against
        the eager forward on random inputs first; where TorchScript is missing (it is deprecated in
        recent PyTorch), fails or disagrees, nothing changes and this returns ``False``.
        """
        dev = next(self.parameters()).device
        shape = (batch, 1, *self.input_size)
        model = self

        class _Forward(nn.Module):  # tensors and tuples of tensors only: what tracing records
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, x: torch.Tensor):  # type: ignore[override]
                logits, crops, params = self.model.forward_all(x)
                return (logits, tuple(crops), tuple(params)) if params else logits

        was_training = [m for m in self.modules() if m.training]
        try:
            for m in was_training:
                m.training = False
            with warnings.catch_warnings():  # deprecation, and tracing's notes on the input checks
                warnings.simplefilter("ignore")
                probe = torch.rand(shape, device=dev)
                # Fill the transforms' caches (base grids, TPS weights) eagerly first: built during the
                # trace they would be recorded as operations and rebuilt on every call.
                self.forward_all(probe)
                traced = torch.jit.freeze(torch.jit.trace(_Forward().eval(), probe, check_trace=False))
                for x in (probe, torch.rand(shape, device=dev), torch.zeros(shape, device=dev)):
                    fast, slow = traced(x), self.forward_all(x)
                    fast_logits, slow_logits = (fast[0], slow[0]) if slow[2] else (fast, slow[0])
                    if not torch.allclose(fast_logits, slow_logits, atol=atol, rtol=1e-4):
                        return False
                    if slow[2] and not all(torch.allclose(a, b, atol=atol, rtol=1e-4) for a, b in zip(fast[2], slow[2])):
                        return False
        except Exception:  # noqa: BLE001 - no TorchScript, or a model it cannot trace: stay eager
            return False
        finally:
            for m in was_training:
                m.training = True
        tensors = [*self.parameters(), *self.buffers()]
        self._traced = {(shape, dev): (traced, tensors, self._weights_key(tensors))}
        return True

    def _fast_forward(self, x: torch.Tensor) -> tuple | None:
        entry = self._traced.get((tuple(x.shape), x.device)) if self._traced and x.dtype == torch.float32 else None
        if entry is None or entry[2] != self._weights_key(entry[1]):
            return None  # another shape, or the weights changed since: the eager forward
        out = entry[0](x)
        if self.st is None:
            return out.unsqueeze(1) if out.ndim == 2 else out, [x], []
        logits, crops, params = out
        return logits, list(crops), list(params)

    @torch.no_grad()
    def predict(self, x: torch.Tensor | np.ndarray, *, check_ground: bool = True) -> Prediction:
        """Classify ``x``: float ``(B, 1, H, W)`` in [0, 1], light ink on dark, at ``input_size``.

        ``check_ground=False`` skips the light-ground test, for inputs made from prepared ones (moved,
        scaled, turned: a big bold digit can then cover most of the edge).

        A tensor or a numpy array. Refused with a sentence saying what to do (never read confidently
        wrong): another shape, integer pixels, values outside [0, 1] (0..255, a mean/std
        normalisation, NaN), a meta tensor, and a light ground (dark ink on white paper: see
        :data:`LIGHT_GROUND`).
        """
        if isinstance(x, np.ndarray):
            try:
                x = torch.from_numpy(np.ascontiguousarray(x))
            except TypeError:  # object or string arrays
                raise TypeError(f"expected pixels as numbers, got a numpy array of {x.dtype}; "
                                "use stn.preprocess(image, model) to prepare an image") from None
        elif not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a tensor or numpy array (B, 1, {self.input_size[0]}, {self.input_size[1]}), "
                            f"got {type(x).__name__}; use stn.preprocess(image, model) to prepare an image")
        if x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[2:]) != self.input_size:
            raise ValueError(
                f"expected input of shape (B, 1, {self.input_size[0]}, {self.input_size[1]}), got {tuple(x.shape)}; "
                "use stn.preprocess(image, model) to prepare an image"
            )
        if not x.is_floating_point():
            raise TypeError(f"expected float pixels in [0, 1], got {x.dtype}: divide 8-bit pixels by 255, "
                            "or use stn.preprocess(image, model) to prepare an image")
        if x.is_meta:
            raise ValueError("the input is a meta tensor (a shape, no pixels): predict reads pixels; "
                             "give it a tensor on the CPU or a GPU")
        if x.numel():
            # Pixels of 0..255 or a mean/std normalisation are read as something else entirely, and confidently.
            lo, hi = torch.aminmax(x)
            lo, hi = lo.item(), hi.item()
            if not (-0.1 <= lo and hi <= 1.1):
                if not (math.isfinite(lo) and math.isfinite(hi)):
                    raise ValueError("the input holds NaN or infinite values: expected pixels in [0, 1] (light ink on dark)")
                raise ValueError(f"expected pixels in [0, 1] (light ink on dark), got values from {lo:.3g} to {hi:.3g}: "
                                 "scale them to [0, 1] (e.g. / 255, with no mean/std normalisation), "
                                 "or use stn.preprocess(image, model) to prepare an image")
            if check_ground:
                _check_ground(x)
        # The frozen copy (eval mode by construction) first: at batch 1 walking the modules costs
        # a tenth of the forward.
        fast = self._fast_forward(x)
        if fast is not None:
            logits, crops, params = fast
        else:
            # Eval mode for the call, then each module's own mode back; nothing to toggle (the
            # usual case) costs nothing, where train()/eval() would walk every submodule twice.
            training = [m for m in self.modules() if m.training]
            for m in training:
                m.training = False
            weight = next(self.parameters())
            x = x.to(weight.device, weight.dtype)
            try:
                fast = self._fast_forward(x)
                logits, crops, params = fast if fast is not None else self.forward_all(x)
            finally:
                for m in training:
                    m.training = True
        head_probs = logits.softmax(dim=-1)  # (B, heads, n)
        probs = head_probs[:, 0]
        for k in range(1, head_probs.shape[1]):  # joint reading of independent heads
            probs = (probs.unsqueeze(2) * head_probs[:, k].unsqueeze(1)).flatten(1)
        return Prediction(
            labels=probs.argmax(dim=1).cpu(),
            probs=probs.cpu(),
            params=[p.cpu() for p in params],
            crops=[c.cpu() for c in crops],
            head_probs=head_probs.cpu(),
            top_logits=logits.amax(dim=-1).amin(dim=-1).cpu(),
            sure_logit=self.sure_logit,
        )


# Most (60%) of an image's outermost pixels over this: a light ground (dark ink on paper), which every
# model reads confidently wrong (r-affine: 7% right on 1 - x); see _light_ground for the margins.
# stn.preprocess's outputs have a dark edge. Not 0.5: uniform noise has about half its pixels over it,
# and a model fed torch.rand (a smoke test) should not be refused at random.
LIGHT_GROUND = 0.7


@functools.lru_cache(maxsize=16)
def _ring(h: int, w: int, device: torch.device) -> torch.Tensor:
    """The flat indices ``(2H + 2W - 4,)`` of an ``(H, W)`` image's outermost ring of pixels (H, W ≥ 2)."""
    i = torch.arange(h * w, device=device).view(h, w)
    return torch.cat([i[0], i[-1], i[1:-1, 0], i[1:-1, -1]])


def _light_ground(x: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` → ``(B,)`` bool: whether the median of each image's outermost ring of pixels, its
    ground, is over :data:`LIGHT_GROUND`.

    The edge, not the whole image: a large bold digit (wild) covers over half of its canvas, but not
    most of its edge. Light where over 60% of the ring is over the threshold (a count: a third of the cost
    of a median at batch 1, and this runs on every ``predict``): on 2,000 test images of each dataset, at
    most 24% of a genuine ring (wild) and at least 67% of an inverted one (wild; 93% elsewhere); a bold
    "6" scaled 1.4× and moved, 53%."""
    b, _, h, w = x.shape
    flat = x.reshape(b, h * w)
    ring = flat if h < 2 or w < 2 else flat.index_select(1, _ring(h, w, x.device))
    return (ring > LIGHT_GROUND).sum(dim=1) * 5 > ring.shape[1] * 3


def _check_ground(x: torch.Tensor) -> None:
    """Refuse a batch ``(B, 1, H, W)`` holding an image with a light ground, naming it."""
    light = _light_ground(x)
    if not bool(light.any()):
        return
    which = light.nonzero().flatten().tolist()
    where = "the image" if x.shape[0] == 1 else (
        f"image {which[0]} of the batch" + (f" (and {len(which) - 1} more)" if len(which) > 1 else ""))
    raise ValueError(f"{where} has a light ground (its edge's median pixel is over {LIGHT_GROUND}): the models "
                     "read light ink on a dark ground, like MNIST; invert it (1 - x), or use "
                     "stn.preprocess(image, model) for a photo or a scan")


def change_transform(
    config: ModelConfig, state: dict[str, torch.Tensor], transform: str | None, transform_options: dict | None = None
) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """An affine ST-CNN's config and weights rewritten for a richer family (projective, TPS) that
    starts as the same model: a warm start for fine-tuning (``stn train --init MODEL --transform tps``).

    Only the localisation net's last layer changes: its rows for each head, ``W`` ``(6, d)`` and
    ``b`` ``(6,)``, become ``M W`` and ``M b`` with ``M`` = :func:`stn.transforms.affine_embedding`.
    With ``bound`` the projective start is exact (both families squash the same two translation
    entries with tanh); a TPS bounds its targets by clipping instead, so its crops differ from the
    affine's by ``|tanh t - t|`` in translation (under 0.04 of the half-width for ``|t| < 0.5``).
    """
    if config.transform != "affine" or transform is None:
        have = f"an ST-CNN {config.transform}" if config.transform else "a CNN baseline"
        want = f"an ST-CNN {transform}" if transform else "a CNN baseline"
        raise ValueError(f"{want} cannot start from {have}: only an affine model warm-starts another family "
                         "(projective, tps); train it from scratch instead.")
    new = ModelConfig.from_dict({**config.to_dict(), "transform": transform, "transform_options": dict(transform_options or {})})
    m = affine_embedding(get(transform, **new.transform_options))  # (n, 6)
    out = dict(state)
    for key in ("st.localization.head.weight", "st.localization.head.bias"):
        old = state[key]
        per_head = old.reshape(config.heads, 6, -1)  # (heads, 6, d) or (heads, 6, 1) for the bias
        out[key] = (m.to(old.dtype) @ per_head).reshape(config.heads * m.shape[0], *old.shape[1:])
    return new, out


def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over heads: logits ``(B, heads, n)``, targets ``(B, heads)``."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten()) * logits.shape[1]
