"""Salient-object-detection metrics, streaming and vectorised, with PySODMetrics' conventions.

Every metric is a small accumulator in the PySODMetrics style: ``step(pred, gt)`` once per image,
``get_results()`` at the end. Only running sums are kept (never the maps, never per-image curves),
so memory does not grow with the dataset.

Input conventions (identical to ``py_sod_metrics`` with ``normalize=True``):

* ``pred`` as ``uint8`` 0..255 (a saved map): divided by 255, then min-max normalised per image
  when it is not constant (MATLAB's ``mapminmax(im2double(.))``).
* ``pred`` as float in [0, 1] (a model output in memory): first quantised with :func:`to_uint8`
  (round half up, exactly what saving it as an 8-bit PNG does), then as above. So evaluating in
  memory gives the same numbers as saving the maps and scoring the PNGs.
* ``gt`` as ``uint8``: foreground where ``gt > 128``; float [0, 1]: where ``round(gt*255) > 128``;
  ``bool``: as is.
* With ``normalize=False`` (as in PySODMetrics) ``pred`` must be float in [0, 1] and ``gt`` bool;
  they are used unchanged.

Threshold curves have 256 entries ordered by **ascending** threshold ``t = 0..255``: entry ``t``
binarises the prediction at ``floor(pred*255) >= t`` (PySODMetrics stores the same curve reversed,
threshold 255 first). The adaptive threshold is ``min(2 * mean(pred), 1)`` applied to the
normalised float prediction with ``>=``.

How it is fast (issue #8). A normalised 8-bit map takes at most 256 values, so one pass over the
image gives a joint histogram of (8-bit value, GT bit) per S-measure quadrant, and MAE, the F and E
curves, the adaptive threshold and every S-measure statistic (means, variances, covariances) are
sums over those 512 bins instead of passes over the pixels. The error map of the weighted
F-measure is a 512-entry table look-up. What depends on the ground truth alone (the distance
transform, its pixel-importance weights, the nearest-GT-pixel indices, the quadrants) lives in
:class:`Truth` and is computed once per mask, however many predictions are scored against it.
Sums run in another order than PySODMetrics' pixel passes, so results agree to ~1e-16 (not bit
for bit); where a branch of the reference depends on the exact rounding of a pixel mean (the
adaptive threshold landing on a map value, a constant S-measure quadrant), the reference's own
pixel computation is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPS = float(np.spacing(1))  # MATLAB's eps, as PySODMetrics uses it
BETA2 = 0.3
N_THRESHOLDS = 256
THRESHOLDS = np.arange(N_THRESHOLDS) / 255.0  # threshold t/255 on the normalised prediction

_LEVELS = np.arange(256, dtype=np.float64) / 255.0
_TIE = 1e-12  # a map value this close to 2*mean(pred): the exact pixel mean decides


def to_uint8(pred: np.ndarray) -> np.ndarray:
    """Quantise a float map in [0, 1] to uint8 0..255 (``floor(p*255 + 0.5)`` in float32, as
    ``basnet predict`` writes its masks; clipped).

    uint8 input is returned unchanged; bool input maps to 0/255.
    """
    arr = np.asarray(pred)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * np.uint8(255)
    arr = np.clip(arr.astype(np.float32, copy=False), 0.0, 1.0)
    return (arr * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def binarize_gt(gt: np.ndarray) -> np.ndarray:
    """Ground truth to bool with PySODMetrics' rule ``gt > 128`` on the 0..255 scale."""
    arr = np.asarray(gt)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.dtype == bool:
        return arr
    if arr.dtype == np.uint8:
        return arr > 128
    if np.issubdtype(arr.dtype, np.integer):
        return arr > 128
    return np.rint(arr.astype(np.float64) * 255.0) > 128


class Truth:
    """A ground-truth mask and what derives from it alone, each computed once on first use.

    Pass the same ``Truth`` to :func:`prepare` for several predictions of one image (several
    methods) and the distance transform of the weighted F-measure is computed once.
    ``gt``: as for :func:`binarize_gt` (``normalize=False``: must already be bool).
    """

    def __init__(self, gt: np.ndarray, normalize: bool = True) -> None:
        arr = np.asarray(gt)
        if arr.ndim == 3:
            arr = arr[..., 0]
        if not normalize and arr.dtype != bool:
            raise TypeError(f"Ground truth must be bool with normalize=False, got {arr.dtype}")
        self.mask: np.ndarray = binarize_gt(arr)
        self.shape: tuple[int, int] = self.mask.shape
        self.size = int(self.mask.size)
        self._rows: np.ndarray | None = None
        self._cols: np.ndarray | None = None
        self._wfm: tuple[Any, ...] | None = None
        self._centroid: tuple[int, int] | None = None

    def _counts(self) -> None:
        as_int = self.mask.view(np.uint8)
        self._rows = np.add.reduce(as_int, axis=1, dtype=np.int32)
        self._cols = np.add.reduce(as_int, axis=0, dtype=np.int32)

    @property
    def rows(self) -> np.ndarray:
        """Foreground pixels per row."""
        if self._rows is None:
            self._counts()
        return self._rows

    @property
    def cols(self) -> np.ndarray:
        """Foreground pixels per column."""
        if self._cols is None:
            self._counts()
        return self._cols

    @property
    def count(self) -> int:
        return int(self.rows.sum(dtype=np.int64))

    def centroid(self) -> tuple[int, int]:
        """S-measure split point: the foreground centroid, rounded half to even, plus one (MATLAB's
        1-based ``1:X`` ranges); needs ``0 < count``."""
        if self._centroid is None:
            h, w = self.shape
            count = self.count
            # exact integer sums, one division: as np.argwhere(gt).mean(axis=0)
            sy = int(np.dot(self.rows.astype(np.int64), np.arange(h, dtype=np.int64)))
            sx = int(np.dot(self.cols.astype(np.int64), np.arange(w, dtype=np.int64)))
            self._centroid = (int(np.round(sy / count)) + 1, int(np.round(sx / count)) + 1)
        return self._centroid

    def quadrants(self) -> list[tuple[slice, slice]] | None:
        """(rows, cols) slices of the four S-measure regions (lt, rt, lb, rb); None when the mask
        is empty or full (the S-measure needs no regions then)."""
        count = self.count
        if count == 0 or count == self.size:
            return None
        cy, cx = self.centroid()
        top, bottom, left, right = slice(0, cy), slice(cy, None), slice(0, cx), slice(cx, None)
        return [(top, left), (top, right), (bottom, left), (bottom, right)]


class Sample:
    """One prepared (pred, gt) pair, shared by all metrics so that the work is done once.

    Quantised maps (``normalize=True``, the usual case) are kept as one uint16 ``code`` per pixel,
    ``2*q + gt + 512*quadrant`` (``q`` the 8-bit value, ``quadrant`` 0..3 the S-measure region
    lt, rt, lb, rb; 0 everywhere when the GT is empty or full), with ``lut[q]`` the normalised
    value of each 8-bit level. ``quad_hist`` counts each code, ``(quadrants, 512)``; ``qhist`` is
    its total as ``(256, 2)`` (background, foreground) counts per ``q``. With ``normalize=False``
    the float map is kept as is (``code`` and ``lut`` are None).

    ``pred`` (float64 normalised prediction) and ``level`` (uint8 histogram bin of each pixel,
    ``floor(pred*255)``) are materialised only when asked for. ``fg_hist``/``bg_hist``: per-level
    pixel counts inside / outside the ground truth.
    """

    def __init__(self, truth: Truth, *, code: np.ndarray | None = None,
                 lut: np.ndarray | None = None, quad_hist: np.ndarray | None = None,
                 pred: np.ndarray | None = None) -> None:
        self.truth = truth
        self.code = code
        self.lut = lut
        self.quad_hist = quad_hist
        self._pred = pred
        self._level: np.ndarray | None = None
        self._cache: dict[str, Any] = {}
        if code is not None:
            assert lut is not None and quad_hist is not None
            self.qhist = quad_hist.sum(axis=0).reshape(256, 2)
            level_lut = (lut * 255).astype(np.uint8)
            fg = np.bincount(level_lut, weights=self.qhist[:, 1], minlength=256)
            bg = np.bincount(level_lut, weights=self.qhist[:, 0], minlength=256)
            self.fg_hist = fg.astype(np.int64)
            self.bg_hist = bg.astype(np.int64)
        else:
            assert pred is not None
            level = self.level
            joint = np.bincount((level.ravel().astype(np.intp) << 1) | self.gt.ravel(),
                                minlength=512).reshape(256, 2)
            self.fg_hist = joint[:, 1].copy()
            self.bg_hist = joint[:, 0].copy()

    def per_pixel(self, per_q: np.ndarray, per_q_fg: np.ndarray | None = None) -> np.ndarray:
        """Each pixel's ``per_q[q]`` off the GT, ``per_q_fg[q]`` on it (``per_q`` again when
        None), by a table look-up on ``code``."""
        assert self.code is not None
        # take() is several times faster with intp indices than with uint16 ones
        return self.table(per_q, per_q_fg).take(self.code.astype(np.intp))

    @property
    def n_codes(self) -> int:
        assert self.quad_hist is not None
        return self.quad_hist.size

    def table(self, per_q: np.ndarray, per_q_fg: np.ndarray | None = None) -> np.ndarray:
        """The look-up table of :meth:`per_pixel`, indexed by ``code``."""
        assert self.quad_hist is not None
        pair = np.empty(512, dtype=per_q.dtype)
        pair[0::2] = per_q
        pair[1::2] = per_q if per_q_fg is None else per_q_fg
        return np.tile(pair, len(self.quad_hist))

    @property
    def quantised(self) -> bool:
        return self.code is not None

    @property
    def gt(self) -> np.ndarray:
        return self.truth.mask

    @property
    def pred(self) -> np.ndarray:
        if self._pred is None:
            assert self.lut is not None and self.code is not None
            self._pred = self.per_pixel(self.lut)
        return self._pred

    @property
    def level(self) -> np.ndarray:
        if self._level is None:
            if self.code is not None:
                assert self.lut is not None
                self._level = self.per_pixel((self.lut * 255).astype(np.uint8))
            else:
                self._level = (self.pred * 255).astype(np.uint8)
        return self._level

    @property
    def size(self) -> int:
        return self.truth.size

    @property
    def gt_count(self) -> int:
        return int(self.fg_hist.sum())

    def mean_pred(self) -> float:
        """Mean of the normalised prediction (from the histogram when quantised)."""
        if "mean" not in self._cache:
            if self.code is not None:
                total = self.qhist[:, 0] + self.qhist[:, 1]
                self._cache["mean"] = float(np.dot(total, self.lut)) / self.size
            else:
                self._cache["mean"] = float(np.mean(self.pred))
        return self._cache["mean"]

    def adaptive_threshold(self) -> float:
        """``min(2 * mean(pred), 1)``. From the histogram mean unless a map value lies within
        ``_TIE`` of it, where the order of summation could flip ``pred >= threshold``: then from
        ``np.mean`` over the pixels, as PySODMetrics computes it."""
        if "thr" not in self._cache:
            t = 2.0 * self.mean_pred()
            if self.code is not None:
                assert self.lut is not None
                present = self.lut[(self.qhist[:, 0] + self.qhist[:, 1]) > 0]
                if np.any(np.abs(present - t) <= _TIE):
                    t = 2.0 * float(np.mean(self.pred))
            self._cache["thr"] = min(t, 1.0)
        return self._cache["thr"]

    def adaptive_counts(self) -> tuple[int, int]:
        """(true positives, predicted positives) at the adaptive threshold."""
        if "adp" not in self._cache:
            thr = self.adaptive_threshold()
            if self.code is not None:
                assert self.lut is not None
                sel = self.qhist[self.lut >= thr]
                tp = int(sel[:, 1].sum())
                self._cache["adp"] = (tp, tp + int(sel[:, 0].sum()))
            else:
                binary = self.pred >= thr
                tp = int(np.count_nonzero(binary & self.gt))
                self._cache["adp"] = (tp, int(np.count_nonzero(binary)))
        return self._cache["adp"]

    def cumulative(self) -> tuple[np.ndarray, np.ndarray]:
        """(TP, FP) counts of ``level >= t`` for t = 0..255 (ascending threshold)."""
        if "cum" not in self._cache:
            cum = np.cumsum(np.stack([self.fg_hist, self.bg_hist])[:, ::-1], axis=1)[:, ::-1]
            self._cache["cum"] = (cum[0], cum[1])
        return self._cache["cum"]

    def error(self) -> np.ndarray:
        """``|pred - gt|`` (float64; a table look-up when quantised). Not kept."""
        if self.code is not None:
            assert self.lut is not None
            return self.per_pixel(self.lut, 1 - self.lut)  # 1 - lut == |lut - 1|
        return np.abs(self.pred - self.gt)


def prepare(pred: np.ndarray, gt: np.ndarray | Truth, normalize: bool = True) -> Sample:
    """Normalise one pair exactly as PySODMetrics does and histogram it (vectorised).

    ``gt`` may be a :class:`Truth`, to share the work that depends on the mask alone.
    """
    truth = gt if isinstance(gt, Truth) else Truth(gt, normalize)
    pred = np.asarray(pred)
    if pred.ndim == 3:
        pred = pred[..., 0]
    if pred.shape != truth.shape:
        raise ValueError(f"Shape mismatch: prediction {pred.shape}, ground truth {truth.shape}")
    if not normalize:
        if pred.dtype not in (np.float32, np.float64):
            raise TypeError(f"normalize=False needs a float prediction, got {pred.dtype}")
        return Sample(truth, pred=pred.astype(np.float64, copy=False))
    code16 = np.left_shift(to_uint8(pred), 1, dtype=np.uint16)  # narrow: cheaper to build
    code16 |= truth.mask
    if truth.quadrants() is None:
        n_codes = 512
    else:
        cy, cx = truth.centroid()
        code16[:, cx:] += 512
        code16[cy:] += 1024
        n_codes = 2048
    quad_hist = np.bincount(code16.ravel(), minlength=n_codes).reshape(-1, 512)
    total = quad_hist.sum(axis=0)
    nonzero = np.flatnonzero(total[0::2] + total[1::2])
    lo, hi = int(nonzero[0]), int(nonzero[-1])
    # Same float64 operations as PySODMetrics' prepare_data() (pred / 255, then min-max), done
    # on the 256 possible values: the normalised values are bit-identical.
    lut = _LEVELS
    if hi != lo:
        lut = (lut - lut[lo]) / (lut[hi] - lut[lo])
    return Sample(truth, code=code16, lut=lut, quad_hist=quad_hist)


def _f_beta(p: np.ndarray | float, r: np.ndarray | float, beta2: float) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    num = (1 + beta2) * p * r
    den = np.where(num == 0, 1.0, beta2 * p + r)
    return num / den


class _Metric:
    """Base of the accumulators.

    ``compute(sample)`` is pure (safe to call from worker threads) and returns this image's
    values: plain names are per-image scalars, names starting with ``_`` are curves kept only
    until ``add``. ``add(values)`` accumulates them (main thread) and returns the scalars.
    ``update(sample)`` and ``step(pred, gt)`` do both.
    """

    def step(self, pred: np.ndarray, gt: np.ndarray, normalize: bool = True) -> dict[str, float]:
        """Add one image (see the module docstring for input conventions)."""
        return self.update(prepare(pred, gt, normalize))

    def update(self, sample: Sample) -> dict[str, float]:
        """Add one prepared image; returns this image's values (for per-image reports)."""
        return self.add(self.compute(sample))

    def compute(self, sample: Sample) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def add(self, values: dict[str, Any]) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError


def _scalars(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if not k.startswith("_")}


class _MeanOf(_Metric):
    """A metric that is one number per image, averaged over images."""

    key = ""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def add(self, values: dict[str, Any]) -> dict[str, float]:
        self.total += values[self.key]
        self.count += 1
        return _scalars(values)

    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    def get_results(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


class MAE(_MeanOf):
    """Mean absolute error, per image then averaged over images."""

    key = "mae"

    def compute(self, sample: Sample) -> dict[str, Any]:
        if sample.quantised:
            assert sample.lut is not None
            qh = sample.qhist  # |pred - gt| is lut[q] off the GT, 1 - lut[q] on it
            total = float(np.dot(qh[:, 0], sample.lut)) + float(np.dot(qh[:, 1], 1 - sample.lut))
            return {"mae": total / sample.size}
        return {"mae": float(np.mean(np.abs(sample.pred - sample.gt)))}

    def get_results(self) -> dict[str, Any]:
        return {"mae": self.mean()}


class FMeasure(_Metric):
    """F-measure (beta^2 = 0.3 by default) over 256 thresholds: max, mean, adaptive and curves.

    ``curve="image"`` (PySODMetrics, default): an F curve per image, averaged over images;
    ``max``/``mean`` are the max/mean of that averaged curve. ``curve="dataset"`` (classic MATLAB
    toolboxes): precision and recall curves averaged over images first, F computed from the mean
    curves. ``adaptive`` is the mean over images of F at ``min(2*mean(pred), 1)`` in both cases.
    ``beta2`` is beta squared (PySODMetrics' ``beta`` argument).
    """

    def __init__(self, beta2: float = BETA2, curve: str = "image") -> None:
        if curve not in ("image", "dataset"):
            raise ValueError(f"curve must be 'image' or 'dataset', got {curve!r}")
        self.beta2 = beta2
        self.curve = curve
        self.count = 0
        self.adaptive_total = 0.0
        self.f_total = np.zeros(N_THRESHOLDS)
        self.p_total = np.zeros(N_THRESHOLDS)
        self.r_total = np.zeros(N_THRESHOLDS)

    def curves(self, sample: Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-image (precision, recall, F) curves, ascending threshold."""
        tp, fp = sample.cumulative()
        precision = tp / np.maximum(tp + fp, 1)
        recall = tp / max(sample.gt_count, 1)
        num = (1 + self.beta2) * precision * recall
        den = self.beta2 * precision + recall
        den[num == 0] = 1
        return precision, recall, num / den

    def adaptive(self, sample: Sample) -> float:
        tp, pos = sample.adaptive_counts()
        if tp == 0:
            return 0.0
        p = tp / pos
        r = tp / sample.gt_count
        return float((1 + self.beta2) * p * r / (self.beta2 * p + r))

    def compute(self, sample: Sample) -> dict[str, Any]:
        p, r, f = self.curves(sample)
        return {"max_f": float(f.max()), "adaptive_f": self.adaptive(sample),
                "_p": p, "_r": r, "_f": f}

    def add(self, values: dict[str, Any]) -> dict[str, float]:
        self.p_total += values["_p"]
        self.r_total += values["_r"]
        self.f_total += values["_f"]
        self.adaptive_total += values["adaptive_f"]
        self.count += 1
        return _scalars(values)

    def get_results(self) -> dict[str, Any]:
        n = max(self.count, 1)
        precision = self.p_total / n
        recall = self.r_total / n
        if self.curve == "image":
            f_curve = self.f_total / n
        else:
            f_curve = _f_beta(precision, recall, self.beta2)
        if self.count == 0:
            nan = float("nan")
            return {"max": nan, "mean": nan, "adaptive": nan, "curve": f_curve,
                    "precision": precision, "recall": recall, "thresholds": THRESHOLDS}
        return {
            "max": float(f_curve.max()),
            "mean": float(f_curve.mean()),
            "adaptive": self.adaptive_total / n,
            "curve": f_curve,
            "precision": precision,
            "recall": recall,
            "thresholds": THRESHOLDS,
        }


# --------------------------------------------------------------------------------------------
# S-measure


def _s_object(x: np.ndarray) -> float:
    mean = float(np.mean(x))
    std = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    return 2 * mean / (mean * mean + 1 + std + EPS)


def _ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    n = pred.size
    x = np.mean(pred)
    y = np.mean(gt)
    dx = pred - x
    dy = gt - y
    sigma_x = np.sum(dx * dx) / (n - 1 + EPS)
    sigma_y = np.sum(dy * dy) / (n - 1 + EPS)
    sigma_xy = np.sum(dx * dy) / (n - 1 + EPS)
    alpha = 4 * x * y * sigma_xy
    beta = (x * x + y * y) * (sigma_x + sigma_y)
    if alpha != 0:
        return float(alpha / (beta + EPS))
    return 1.0 if beta == 0 else 0.0


def s_measure(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> float:
    """Structure measure (Fan et al., ICCV 2017) of a normalised float pred and a bool gt."""
    y = float(np.mean(gt))
    if y == 0:
        return float(1 - np.mean(pred))
    if y == 1:
        return float(np.mean(pred))
    # object-aware
    fg = _s_object(pred[gt]) * y
    bg = _s_object((1 - pred)[~gt]) * (1 - y)
    object_score = fg + bg
    # region-aware: split at the (rounded, MATLAB 1-based) foreground centroid
    quads = Truth(gt).quadrants()
    assert quads is not None
    gtf = gt.astype(np.float64)
    region_score = sum(_ssim(pred[r, c], gtf[r, c]) * wk
                       for (r, c), wk in zip(quads, _region_weights(gt.shape, quads)))
    return float(max(0.0, object_score * alpha + region_score * (1 - alpha)))


def _region_weights(shape: tuple[int, int], quads: list[tuple[slice, slice]]) -> list[float]:
    h, w = shape
    area = h * w
    cy, cx = quads[0][0].stop, quads[0][1].stop
    w_lt = cx * cy / area
    w_rt = cy * (w - cx) / area
    w_lb = (h - cy) * cx / area
    return [w_lt, w_rt, w_lb, 1 - w_lt - w_rt - w_lb]


def _s_object_counts(counts: np.ndarray, values: np.ndarray, n: int) -> float:
    """:func:`_s_object` of ``n`` pixels given as ``counts`` of each of ``values``."""
    mean = float(np.dot(counts, values)) / n
    if n > 1:
        d = values - mean
        std = float(np.sqrt(np.dot(counts, d * d) / (n - 1)))
    else:
        std = 0.0
    return 2 * mean / (mean * mean + 1 + std + EPS)


def _s_measure_counts(sample: Sample, alpha: float = 0.5) -> float:
    """:func:`s_measure` of a quantised sample, from its per-quadrant (value, GT) histograms."""
    assert sample.lut is not None and sample.quad_hist is not None
    n = sample.size
    count = sample.gt_count
    if count == 0:
        return float(1 - sample.mean_pred())
    if count == n:
        return float(sample.mean_pred())
    lut = sample.lut
    y = count / n
    fg = _s_object_counts(sample.qhist[:, 1], lut, count) * y
    bg = _s_object_counts(sample.qhist[:, 0], 1 - lut, n - count) * (1 - y)
    object_score = fg + bg
    # region-aware: SSIM of each quadrant from its histogram, all four at once
    quads = sample.truth.quadrants()
    assert quads is not None
    hist = sample.quad_hist.reshape(4, 256, 2).astype(np.float64)
    h_fg = hist[:, :, 1]
    h_all = hist[:, :, 0] + h_fg
    nk = h_all.sum(axis=1)
    ck = h_fg.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = (h_all @ lut) / nk
        yk = ck / nk
        d = lut[None, :] - x[:, None]
        den = nk - 1 + EPS
        sigma_x = np.einsum("ij,ij,ij->i", h_all, d, d) / den
        sigma_y = (ck * (1 - yk) ** 2 + (nk - ck) * yk ** 2) / den
        fg_dev = np.einsum("ij,ij->i", h_fg, d)
        sigma_xy = (fg_dev * (1 - yk) - (np.einsum("ij,ij->i", h_all, d) - fg_dev) * yk) / den
        a = 4 * x * yk * sigma_xy
        b = (x * x + yk * yk) * (sigma_x + sigma_y)
        scores = np.where(a != 0, a / (b + EPS), np.where(b == 0, 1.0, 0.0))
    region_score = 0.0
    for k, ((r, c), wk) in enumerate(zip(quads, _region_weights(sample.truth.shape, quads))):
        score = float(scores[k])
        # Empty quadrant, or constant GT and constant map in it: PySODMetrics' result then hangs
        # on whether np.mean of the constant pixels rounds back to the constant; compute it so.
        if nk[k] == 0 or ((ck[k] == 0 or ck[k] == nk[k]) and np.count_nonzero(h_all[k]) == 1):
            score = _ssim(sample.pred[r, c], sample.gt[r, c].astype(np.float64))
        region_score += score * wk
    return float(max(0.0, object_score * alpha + region_score * (1 - alpha)))


class SMeasure(_MeanOf):
    """S-measure (alpha = 0.5), per image then averaged."""

    key = "s_measure"

    def __init__(self, alpha: float = 0.5) -> None:
        super().__init__()
        self.alpha = alpha

    def compute(self, sample: Sample) -> dict[str, Any]:
        if sample.quantised:
            return {"s_measure": _s_measure_counts(sample, self.alpha)}
        return {"s_measure": s_measure(sample.pred, sample.gt, self.alpha)}

    def get_results(self) -> dict[str, Any]:
        return {"sm": self.mean()}


# --------------------------------------------------------------------------------------------
# E-measure


_PRED_FG = np.array([1.0, 1.0, 0.0, 0.0])  # binarised prediction of each E-measure part


def _e_from_counts(tp: np.ndarray | int, fp: np.ndarray | int, gt_count: int,
                   size: int) -> np.ndarray:
    """Enhanced-alignment measure from (TP, FP) counts of a binarised prediction (vectorised)."""
    tp = np.asarray(tp, dtype=np.float64)
    fp = np.asarray(fp, dtype=np.float64)
    pred_fg = tp + fp
    pred_bg = size - pred_fg
    if gt_count == 0:
        total = pred_bg
    elif gt_count == size:
        total = pred_fg
    else:
        # the four parts (pred fg/bg x GT fg/bg) as rows: TP, FP, FN, TN
        fn = gt_count - tp
        numel = np.stack([tp, fp, fn, pred_bg - fn])
        mean_gt = gt_count / size
        shape = (4,) + (1,) * tp.ndim
        a = _PRED_FG.reshape(shape) - pred_fg / size  # demeaned prediction of each part
        b = np.array([1 - mean_gt, 0 - mean_gt, 1 - mean_gt, 0 - mean_gt]).reshape(shape)
        align = 2 * (a * b) / (a * a + b * b + EPS)
        align += 1
        total = (align * align / 4 * numel).sum(axis=0)  # parts added in order, as PySOD
    return total / (size - 1 + EPS)


class EMeasure(_Metric):
    """E-measure (Fan et al., IJCAI 2018): adaptive, and mean/max of the per-image curves averaged
    over images (PySODMetrics' convention)."""

    def __init__(self) -> None:
        self.curve_total = np.zeros(N_THRESHOLDS)
        self.adaptive_total = 0.0
        self.count = 0

    def compute(self, sample: Sample) -> dict[str, Any]:
        tp, fp = sample.cumulative()
        atp, apos = sample.adaptive_counts()
        # the 256 thresholds and the adaptive one in one call (elementwise: same values)
        values = _e_from_counts(np.append(tp, atp), np.append(fp, apos - atp),
                                sample.gt_count, sample.size)
        curve = values[:N_THRESHOLDS]
        return {"max_e": float(curve.max()), "adaptive_e": float(values[-1]), "_e": curve}

    def add(self, values: dict[str, Any]) -> dict[str, float]:
        self.curve_total += values["_e"]
        self.adaptive_total += values["adaptive_e"]
        self.count += 1
        return _scalars(values)

    def get_results(self) -> dict[str, Any]:
        if not self.count:
            nan = float("nan")
            return {"max": nan, "mean": nan, "adaptive": nan, "curve": self.curve_total}
        curve = self.curve_total / self.count
        return {"max": float(curve.max()), "mean": float(curve.mean()),
                "adaptive": self.adaptive_total / self.count, "curve": curve}


# --------------------------------------------------------------------------------------------
# Weighted F-measure (Margolin et al., CVPR 2014)

_USE_SCIPY = True  # scipy.ndimage EDT when importable (faster); the NumPy EDT gives the same


def _scipy_ndimage() -> Any:
    if not _USE_SCIPY:
        return None
    try:
        from scipy import ndimage
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    return ndimage


def _gauss_1d(size: int = 7, sigma: float = 5.0) -> np.ndarray:
    m = (size - 1) / 2
    x = np.arange(-m, m + 1)
    h = np.exp(-(x * x) / (2 * sigma * sigma))
    return h / h.sum()


_GAUSS = _gauss_1d()


def _gauss_filter(img: np.ndarray) -> np.ndarray:
    """7x7 Gaussian (sigma 5) with zero padding, as MATLAB's ``imfilter(.., K)``.

    fspecial's kernel is the outer product of a normalised 1-D Gaussian with itself, so it is
    applied as two 1-D passes (equal to ``ndimage.convolve`` with the 2-D kernel to ~1e-16, and
    much faster): scipy's ``correlate1d``, or NumPy adding the symmetric taps in pairs.
    """
    nd = _scipy_ndimage()
    if nd is not None:
        tmp = nd.correlate1d(img, _GAUSS, axis=1, mode="constant")
        return nd.correlate1d(tmp, _GAUSS, axis=0, mode="constant", output=tmp)
    k = _GAUSS
    r = len(k) // 2
    h, w = img.shape
    pad = np.zeros((h + 2 * r, w + 2 * r))
    pad[r:r + h, r:r + w] = img
    # along rows, for all padded rows (the row padding stays zero)
    tmp = pad[:, r:r + w] * k[r]
    buf = np.empty_like(tmp)
    for i in range(r):
        np.add(pad[:, i:i + w], pad[:, 2 * r - i:2 * r - i + w], out=buf)
        buf *= k[i]
        tmp += buf
    # along columns
    out = tmp[r:r + h] * k[r]
    buf = buf[:h]
    for i in range(r):
        np.add(tmp[i:i + h], tmp[2 * r - i:2 * r - i + h], out=buf)
        buf *= k[i]
        out += buf
    return out


def _edt_1d_rows(f: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Squared distance transform of sampled functions along axis 1, for all rows at once.

    ``d[r, x] = min_{c in cols} f[r, c] + (c - x)^2`` (Felzenszwalb & Huttenlocher's lower
    envelope: one Python step per candidate column, vectorised over rows).
    """
    h, w = f.shape
    n = len(cols)
    rows = np.arange(h)
    base = rows * n
    zbase = rows * (n + 1)
    fcols = np.ascontiguousarray((f[:, cols] + (cols * cols)[None, :]).T)  # (n, h)
    V = np.zeros(h * n, dtype=np.int64)  # stack of parabola columns
    FV = np.zeros(h * n)  # f[v] + v^2 of the stack
    Z = np.full(h * (n + 1), np.inf)  # envelope boundaries
    V[base] = cols[0]
    FV[base] = fcols[0]
    Z[zbase] = -np.inf
    k = np.zeros(h, dtype=np.int64)
    for j in range(1, n):
        q = int(cols[j])
        fq = fcols[j]
        while True:
            idx = base + k
            vk = V[idx]
            s = (fq - FV[idx]) / (2.0 * (q - vk))
            pop = s <= Z[zbase + k]
            if not pop.any():
                break
            k -= pop
        k += 1
        idx = base + k
        V[idx] = q
        FV[idx] = fq
        Z[zbase + k] = s
        Z[zbase + k + 1] = np.inf
    z = Z.reshape(h, n + 1)
    # entries past the final stack top are stale (left by popped pieces): reset them
    z[np.arange(n + 1)[None, :] > (k + 1)[:, None]] = np.inf
    # query: for each x, the envelope piece j with z[j] <= x < z[j+1]
    bounds = np.clip(z[:, 1:], -1.0, w + 1.0)  # z[1..n], sorted per row; clip keeps the order
    offset = (rows * (w + 3.0))[:, None]
    flat = (bounds + offset).ravel()
    queries = (np.arange(w, dtype=np.float64)[None, :] + offset).ravel()
    piece = np.searchsorted(flat, queries, side="right").reshape(h, w) - base[:, None]
    src = V.reshape(h, n)[rows[:, None], piece]
    return f[rows[:, None], src] + (src - np.arange(w)[None, :]) ** 2


def _edt2_numpy(feature: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of every pixel to the nearest ``feature`` pixel (pure NumPy,
    exact integers as float64). The envelope pass runs along the axis with fewer lines that hold
    a feature."""
    if np.count_nonzero(feature.any(axis=0)) > np.count_nonzero(feature.any(axis=1)):
        return _edt2_numpy_cols(feature.T).T
    return _edt2_numpy_cols(feature)


def _edt_numpy(feature: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest ``feature`` pixel (pure NumPy, exact)."""
    return np.sqrt(_edt2_numpy(feature))


def _edt2_numpy_cols(feature: np.ndarray) -> np.ndarray:
    h, w = feature.shape
    big = 10.0 * (h + w + 1)
    rows = np.arange(h)[:, None]
    up = np.maximum.accumulate(np.where(feature, rows, -big), axis=0)
    down = np.minimum.accumulate(np.where(feature, rows, big)[::-1], axis=0)[::-1]
    g = np.minimum(np.minimum(rows - up, down - rows), big)
    cols = np.flatnonzero(feature.any(axis=0))
    return _edt_1d_rows(g * g, cols)


# Offsets within distance sqrt(18) (all that a pixel within 3 pixels (Chebyshev) of a feature
# can need), in scipy's tie order: distance, then column, then row.
_NEAR = sorted((dy * dy + dx * dx, dx, dy) for dy in range(-4, 5) for dx in range(-4, 5)
                if dy * dy + dx * dx <= 18)


def _nearest_in_band(feature: np.ndarray, ys: np.ndarray, xs: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest feature pixel of each (ys, xs) (all within 3 px of one), scipy's tie rule."""
    h, w = feature.shape
    pad = np.zeros((h + 8, w + 8), dtype=bool)
    pad[4:4 + h, 4:4 + w] = feature
    ny = np.full(ys.shape, -1, dtype=np.int64)
    nx = np.full(xs.shape, -1, dtype=np.int64)
    todo = np.arange(ys.size)
    for _, dx, dy in _NEAR:
        if not todo.size:
            break
        hit = pad[ys[todo] + dy + 4, xs[todo] + dx + 4]
        found = todo[hit]
        ny[found] = ys[found] + dy
        nx[found] = xs[found] + dx
        todo = todo[~hit]
    return ny, nx


def _dilate7(mask: np.ndarray) -> np.ndarray:
    """Dilation by a 7x7 square (outside the image is background), as two 1-D passes."""
    h, w = mask.shape
    pad = np.zeros((h + 6, w + 6), dtype=bool)
    pad[3:3 + h, 3:3 + w] = mask
    rows = pad[:, 3:3 + w].copy()
    for i in (0, 1, 2, 4, 5, 6):
        rows |= pad[:, i:i + w]
    out = rows[3:3 + h].copy()
    for i in (0, 1, 2, 4, 5, 6):
        out |= rows[i:i + h]
    return out


def _feature_transform(nd: Any, feature: np.ndarray) -> np.ndarray:
    """scipy's nearest-feature-pixel indices, ``(2, H, W)`` int32, for the ``True`` pixels of
    ``feature`` (what ``distance_transform_edt(~feature, return_indices=True)`` returns)."""
    ft = np.empty((2,) + feature.shape, dtype=np.int32)
    try:  # the public function's own kernel, minus its int8 copy of the input
        nd._nd_image.euclidean_feature_transform((~feature).view(np.int8), None, ft)
    except (AttributeError, TypeError, RuntimeError):  # pragma: no cover - other scipy
        ft = nd.distance_transform_edt(~feature, return_distances=False, return_indices=True)
    return ft


def _wfm_truth(truth: Truth) -> tuple[Any, ...]:
    """The mask-only part of the weighted F-measure, cached on ``truth`` (needs a non-empty GT).

    ``(decay, box, band, source)``: ``decay`` is ``0.5^(dist/5)`` of every pixel, ``dist`` its
    Euclidean distance to the GT (the pixel importance off the GT is ``B = 2 - decay``); ``box``
    the GT's bounding box grown by 3 px (the 7x7 filtered error is only used on GT pixels, so
    only this box is filtered); ``band`` the flat box indices of the background pixels within
    3 px of the GT (the only ones the filter carries to GT pixels) and ``source`` the flat box
    index of each one's nearest GT pixel (scipy's ``distance_transform_edt`` tie rule), whose
    error it takes.
    """
    if truth._wfm is None:
        gt = truth.mask
        h, w = truth.shape
        rows = np.flatnonzero(truth.rows)
        cols = np.flatnonzero(truth.cols)
        r0, r1 = max(int(rows[0]) - 3, 0), min(int(rows[-1]) + 4, h)
        c0, c1 = max(int(cols[0]) - 3, 0), min(int(cols[-1]) + 4, w)
        box = (slice(r0, r1), slice(c0, c1))
        bw = c1 - c0
        g = gt[box]
        near = _dilate7(g)  # within 3 px (Chebyshev) of the GT
        near &= ~g
        band = np.flatnonzero(near)
        by, bx = np.divmod(band, bw)
        nd = _scipy_ndimage()
        if nd is not None:
            ft = _feature_transform(nd, gt)
            at = (by + r0) * w + bx + c0  # flat image index of each band pixel
            source = (ft[0].ravel()[at] - r0) * bw + (ft[1].ravel()[at] - c0)
            dy, dx = ft[0], ft[1]
            dy -= np.arange(h, dtype=np.int32)[:, None]  # offsets to the nearest GT pixel
            dx -= np.arange(w, dtype=np.int32)[None, :]
            np.multiply(ft, ft, out=ft)
            d2 = np.add(dy, dx, out=dy)
        else:
            d2 = _edt2_numpy(gt)
            ny, nx = _nearest_in_band(g, by, bx)
            source = ny * bw + nx
        # dist = sqrt(d2), d2 an integer: the same float64 operations as PySODMetrics
        decay = np.sqrt(d2, dtype=np.float64)
        decay *= np.log(0.5) / 5
        np.exp(decay, out=decay)
        truth._wfm = (decay, box, band, source)
    return truth._wfm


def _weighted_f(bg_sum: float, bg_decayed: float, error_box: np.ndarray, truth: Truth,
                beta2: float = 1.0) -> float:
    """Weighted F-measure from sums over the error map ``E = |pred - gt|``: ``bg_sum`` of E off
    the GT, ``bg_decayed`` of ``E * decay`` off the GT (:func:`_wfm_truth`), and ``error_box``,
    E on the box (a fresh array, changed here). Needs a non-empty GT."""
    count = truth.count
    _, box, band, source = _wfm_truth(truth)
    # false positives: sum of E * B off the GT, B = 2 - decay (>= 1.13 there: no cancellation)
    fp_w = 2 * bg_sum - bg_decayed
    # GT pixels: min(E, EA), EA the 7x7 Gaussian of E where background pixels near the GT take
    # the error of their nearest GT pixel
    et = error_box.ravel()
    et[band] = et[source]
    ea = _gauss_filter(error_box)
    np.minimum(ea, error_box, out=ea)  # error_box == E on GT pixels
    fg_sum = float(np.sum(ea, where=truth.mask[box]))
    tp_w = count - fg_sum
    R = 1 - fg_sum / count
    P = tp_w / (tp_w + fp_w + EPS)
    return float((1 + beta2) * R * P / (R + beta2 * P + EPS))


def _weighted_f_of_error(error: np.ndarray, truth: Truth, beta2: float = 1.0) -> float:
    """Weighted F-measure of an error map ``|pred - gt|`` (0 for an empty GT)."""
    if truth.count == 0:
        return 0.0
    decay, box = _wfm_truth(truth)[:2]
    error_bg = np.where(truth.mask, 0.0, error)
    bg_decayed = float(np.einsum("i,i->", error_bg.ravel(), decay.ravel()))
    return _weighted_f(float(error_bg.sum()), bg_decayed, error[box].copy(), truth, beta2)


def weighted_f_measure(pred: np.ndarray, gt: np.ndarray, beta2: float = 1.0) -> float:
    """Weighted F-measure of a normalised float pred and a bool gt (0 for an empty gt).

    Same algorithm as PySODMetrics (MATLAB's WFb).
    """
    truth = Truth(np.asarray(gt, dtype=bool), normalize=False)
    return _weighted_f_of_error(np.abs(pred - truth.mask), truth, beta2)


class WeightedFMeasure(_MeanOf):
    """Weighted F-measure (beta^2 = 1, 7x7 Gaussian sigma 5), per image then averaged."""

    key = "weighted_f"

    def __init__(self, beta2: float = 1.0) -> None:
        super().__init__()
        self.beta2 = beta2

    def compute(self, sample: Sample) -> dict[str, Any]:
        truth = sample.truth
        if not sample.quantised or truth.count == 0:
            return {"weighted_f": _weighted_f_of_error(sample.error(), truth, self.beta2)}
        assert sample.lut is not None and sample.code is not None
        lut, code = sample.lut, sample.code
        decay, box = _wfm_truth(truth)[:2]
        # sum of E * decay off the GT: decay summed per code, times E of each code (0 on the
        # GT); no image-sized error map
        per_code = np.bincount(code.ravel(), weights=decay.ravel(), minlength=sample.n_codes)
        bg_decayed = float(np.dot(per_code, sample.table(lut, np.zeros(256))))
        bg_sum = float(np.dot(sample.qhist[:, 0], lut))
        error_box = sample.table(lut, 1 - lut).take(code[box].astype(np.intp))  # |lut - 1|
        value = _weighted_f(bg_sum, bg_decayed, error_box, truth, self.beta2)
        return {"weighted_f": value}

    def get_results(self) -> dict[str, Any]:
        return {"wfm": self.mean()}


# --------------------------------------------------------------------------------------------
# Relaxed boundary F-measure (BASNet, CVPR 2019)


def _shifted(mask: np.ndarray, offsets: list[tuple[int, int]], dilate: bool) -> np.ndarray:
    """Dilation (OR) or erosion (AND) over ``offsets``; outside the image is background."""
    r = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    h, w = mask.shape
    padded = np.zeros((h + 2 * r, w + 2 * r), dtype=bool)
    padded[r:r + h, r:r + w] = mask
    out = np.zeros_like(mask, dtype=bool) if dilate else np.ones_like(mask, dtype=bool)
    for dy, dx in offsets:
        view = padded[r + dy:r + dy + h, r + dx:r + dx + w]
        if dilate:
            out |= view
        else:
            out &= view
    return out


_SQUARE3 = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def boundary(mask: np.ndarray) -> np.ndarray:
    """``mask XOR erode(mask, 3x3)``; outside the image counts as background (zero padding)."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~_shifted(mask, _SQUARE3, dilate=False)


def _disk(rho: int) -> list[tuple[int, int]]:
    return [(dy, dx) for dy in range(-rho, rho + 1) for dx in range(-rho, rho + 1)
            if dy * dy + dx * dx <= rho * rho]


def relaxed_boundary_f(pred_bin: np.ndarray, gt_bin: np.ndarray, rho: int = 3,
                       beta2: float = BETA2) -> tuple[float, float, float]:
    """(F, precision, recall) of the boundaries of two binary masks, with tolerance ``rho``.

    Relaxed precision: the fraction of predicted boundary pixels with a GT boundary pixel within
    Euclidean distance ``rho``; relaxed recall: the fraction of GT boundary pixels with a predicted
    boundary pixel within ``rho``. Both boundaries empty gives 1; only one empty gives 0.
    """
    pb = boundary(pred_bin)
    gb = boundary(gt_bin)
    n_p = int(np.count_nonzero(pb))
    n_g = int(np.count_nonzero(gb))
    if n_p == 0 and n_g == 0:
        return 1.0, 1.0, 1.0
    if n_p == 0 or n_g == 0:
        return 0.0, 0.0 if n_p else 1.0, 0.0 if n_g else 1.0
    disk = _disk(rho)
    precision = np.count_nonzero(pb & _shifted(gb, disk, dilate=True)) / n_p
    recall = np.count_nonzero(gb & _shifted(pb, disk, dilate=True)) / n_g
    f = float(_f_beta(precision, recall, beta2))
    return f, float(precision), float(recall)


class RelaxedBoundaryFMeasure(_MeanOf):
    """BASNet's relaxed boundary F-measure: prediction binarised at ``>= 0.5`` (after the usual
    normalisation), GT at ``> 128``; boundary = mask XOR its 3x3 erosion; tolerance ``rho`` = 3
    pixels (Euclidean); F per image with beta^2 = 0.3, averaged over images."""

    key = "relaxed_f"

    def __init__(self, rho: int = 3, beta2: float = BETA2) -> None:
        super().__init__()
        self.rho = rho
        self.beta2 = beta2

    def compute(self, sample: Sample) -> dict[str, Any]:
        if sample.quantised:
            assert sample.lut is not None
            binary = sample.per_pixel(sample.lut >= 0.5)
        else:
            binary = sample.pred >= 0.5
        f = relaxed_boundary_f(binary, sample.gt, self.rho, self.beta2)[0]
        return {"relaxed_f": f}

    def get_results(self) -> dict[str, Any]:
        return {"relax_f": self.mean()}


# --------------------------------------------------------------------------------------------
# All metrics together

METRIC_NAMES = ("mae", "max_f", "mean_f", "adaptive_f", "s_measure", "max_e", "mean_e",
                "adaptive_e", "weighted_f", "relaxed_f")


class MetricSuite:
    """Every metric above, fed from one prepared sample per image.

    ``step(pred, gt)`` returns the image's values (``mae``, ``max_f``, ``adaptive_f``,
    ``s_measure``, ``max_e``, ``adaptive_e``, ``weighted_f``, ``relaxed_f``); ``get_results()``
    gives the dataset numbers (``METRIC_NAMES``) plus curves.
    """

    def __init__(self, curve: str = "image", beta2: float = BETA2, rho: int = 3) -> None:
        self.mae = MAE()
        self.fm = FMeasure(beta2=beta2, curve=curve)
        self.sm = SMeasure()
        self.em = EMeasure()
        self.wfm = WeightedFMeasure()
        self.relax = RelaxedBoundaryFMeasure(rho=rho, beta2=beta2)
        self.curve = curve

    @property
    def count(self) -> int:
        return self.mae.count

    def _metrics(self) -> tuple[_Metric, ...]:
        return (self.mae, self.fm, self.sm, self.em, self.wfm, self.relax)

    def compute(self, sample: Sample) -> dict[str, Any]:
        """All metrics' values for one image (pure: may run in a worker thread)."""
        out: dict[str, Any] = {}
        for metric in self._metrics():
            out.update(metric.compute(sample))
        return out

    def add(self, values: dict[str, Any]) -> dict[str, float]:
        """Accumulate :meth:`compute`'s values; returns the image's scalars."""
        for metric in self._metrics():
            metric.add(values)
        return _scalars(values)

    def update(self, sample: Sample) -> dict[str, float]:
        return self.add(self.compute(sample))

    def step(self, pred: np.ndarray, gt: np.ndarray, normalize: bool = True) -> dict[str, float]:
        return self.update(prepare(pred, gt, normalize))

    def get_results(self) -> dict[str, Any]:
        fm = self.fm.get_results()
        em = self.em.get_results()
        scalars = {
            "mae": self.mae.get_results()["mae"],
            "max_f": fm["max"],
            "mean_f": fm["mean"],
            "adaptive_f": fm["adaptive"],
            "s_measure": self.sm.get_results()["sm"],
            "max_e": em["max"],
            "mean_e": em["mean"],
            "adaptive_e": em["adaptive"],
            "weighted_f": self.wfm.get_results()["wfm"],
            "relaxed_f": self.relax.get_results()["relax_f"],
        }
        curves = {
            "thresholds": THRESHOLDS,
            "precision": fm["precision"],
            "recall": fm["recall"],
            "f": fm["curve"],
            "e": em["curve"],
        }
        return {"metrics": scalars, "curves": curves, "count": self.count}
