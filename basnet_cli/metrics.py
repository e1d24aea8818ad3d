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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

EPS = float(np.spacing(1))  # MATLAB's eps, as PySODMetrics uses it
BETA2 = 0.3
N_THRESHOLDS = 256
THRESHOLDS = np.arange(N_THRESHOLDS) / 255.0  # threshold t/255 on the normalised prediction

_LEVELS = np.arange(256, dtype=np.float64) / 255.0


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


@dataclass
class Sample:
    """One prepared (pred, gt) pair, shared by all metrics so that the work is done once.

    ``pred``: float64 normalised prediction in [0, 1]; ``gt``: bool; ``level``: uint8 histogram bin
    of each pixel (``floor(pred*255)``, PySODMetrics' ``(pred*255).astype(uint8)``);
    ``fg_hist``/``bg_hist``: per-level pixel counts inside / outside the ground truth.
    """

    pred: np.ndarray
    gt: np.ndarray
    level: np.ndarray
    fg_hist: np.ndarray
    bg_hist: np.ndarray
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        return int(self.gt.size)

    @property
    def gt_count(self) -> int:
        return int(self.fg_hist.sum())

    def mean_pred(self) -> float:
        if "mean" not in self._cache:
            self._cache["mean"] = float(np.mean(self.pred))
        return self._cache["mean"]

    def adaptive_threshold(self) -> float:
        return min(2.0 * self.mean_pred(), 1.0)

    def adaptive_counts(self) -> tuple[int, int]:
        """(true positives, predicted positives) at the adaptive threshold."""
        if "adp" not in self._cache:
            binary = self.pred >= self.adaptive_threshold()
            tp = int(np.count_nonzero(binary & self.gt))
            self._cache["adp"] = (tp, int(np.count_nonzero(binary)))
        return self._cache["adp"]

    def cumulative(self) -> tuple[np.ndarray, np.ndarray]:
        """(TP, FP) counts of ``level >= t`` for t = 0..255 (ascending threshold)."""
        if "cum" not in self._cache:
            tp = np.cumsum(self.fg_hist[::-1])[::-1]
            fp = np.cumsum(self.bg_hist[::-1])[::-1]
            self._cache["cum"] = (tp, fp)
        return self._cache["cum"]


def prepare(pred: np.ndarray, gt: np.ndarray, normalize: bool = True) -> Sample:
    """Normalise one pair exactly as PySODMetrics does and histogram it (vectorised)."""
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.ndim == 3:
        pred = pred[..., 0]
    if gt.ndim == 3:
        gt = gt[..., 0]
    if pred.shape != gt.shape:
        raise ValueError(f"Shape mismatch: prediction {pred.shape}, ground truth {gt.shape}")
    if normalize:
        q = to_uint8(pred)
        gt_b = binarize_gt(gt)
        lo, hi = int(q.min()), int(q.max())
        # Same float64 operations as PySODMetrics' prepare_data(), done on the 256 possible values
        # through a look-up table: the results are bit-identical.
        lut = _LEVELS
        if hi != lo:
            lut = (lut - lut[lo]) / (lut[hi] - lut[lo])
        level_lut = (lut * 255).astype(np.uint8)
        pred_f = lut[q]
        level = level_lut[q]
    else:
        if pred.dtype not in (np.float32, np.float64):
            raise TypeError(f"normalize=False needs a float prediction, got {pred.dtype}")
        if gt.dtype != bool:
            raise TypeError(f"Ground truth must be bool with normalize=False, got {gt.dtype}")
        pred_f = pred.astype(np.float64, copy=False)
        gt_b = gt
        level = (pred_f * 255).astype(np.uint8)
    joint = np.bincount((level.ravel().astype(np.intp) << 1) | gt_b.ravel(), minlength=512)
    joint = joint.reshape(256, 2)
    return Sample(pred=pred_f, gt=gt_b, level=level, fg_hist=joint[:, 1].copy(),
                  bg_hist=joint[:, 0].copy())


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
        pos = tp + fp
        precision = tp / np.where(pos == 0, 1, pos)
        recall = tp / max(sample.gt_count, 1)
        return precision, recall, _f_beta(precision, recall, self.beta2)

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
    h, w = gt.shape
    area = h * w
    count = np.count_nonzero(gt)
    rows = np.count_nonzero(gt, axis=1)
    cols = np.count_nonzero(gt, axis=0)
    cy = int(np.round(float(np.dot(rows, np.arange(h, dtype=np.float64))) / count)) + 1
    cx = int(np.round(float(np.dot(cols, np.arange(w, dtype=np.float64))) / count)) + 1
    w_lt = cx * cy / area
    w_rt = cy * (w - cx) / area
    w_lb = (h - cy) * cx / area
    w_rb = 1 - w_lt - w_rt - w_lb
    gtf = gt.astype(np.float64)
    region_score = (
        _ssim(pred[:cy, :cx], gtf[:cy, :cx]) * w_lt
        + _ssim(pred[:cy, cx:], gtf[:cy, cx:]) * w_rt
        + _ssim(pred[cy:, :cx], gtf[cy:, :cx]) * w_lb
        + _ssim(pred[cy:, cx:], gtf[cy:, cx:]) * w_rb
    )
    return float(max(0.0, object_score * alpha + region_score * (1 - alpha)))


class SMeasure(_MeanOf):
    """S-measure (alpha = 0.5), per image then averaged."""

    key = "s_measure"

    def __init__(self, alpha: float = 0.5) -> None:
        super().__init__()
        self.alpha = alpha

    def compute(self, sample: Sample) -> dict[str, Any]:
        return {"s_measure": s_measure(sample.pred, sample.gt, self.alpha)}

    def get_results(self) -> dict[str, Any]:
        return {"sm": self.mean()}


# --------------------------------------------------------------------------------------------
# E-measure


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
        fn = gt_count - tp
        tn = pred_bg - fn
        mean_pred = pred_fg / size
        mean_gt = gt_count / size
        p_fg, p_bg = 1 - mean_pred, 0 - mean_pred
        g_fg, g_bg = 1 - mean_gt, 0 - mean_gt
        total = np.zeros_like(tp)
        for numel, a, b in ((tp, p_fg, g_fg), (fp, p_fg, g_bg), (fn, p_bg, g_fg),
                            (tn, p_bg, g_bg)):
            align = 2 * (a * b) / (a * a + b * b + EPS)
            total = total + (align + 1) ** 2 / 4 * numel
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
        curve = _e_from_counts(tp, fp, sample.gt_count, sample.size)
        atp, apos = sample.adaptive_counts()
        adaptive = float(_e_from_counts(atp, apos - atp, sample.gt_count, sample.size))
        return {"max_e": float(curve.max()), "adaptive_e": adaptive, "_e": curve}

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


def _gauss_filter(img: np.ndarray) -> np.ndarray:
    """7x7 Gaussian (sigma 5) with zero padding, as MATLAB's ``imfilter(.., K)``.

    fspecial's kernel is the outer product of a normalised 1-D Gaussian with itself, so it is
    applied as two in-place 1-D passes (equal to ``ndimage.convolve`` to ~1e-16, and faster).
    """
    k = _gauss_1d()
    r = len(k) // 2
    h, w = img.shape
    pad = np.zeros((h + 2 * r, w + 2 * r))
    pad[r:r + h, r:r + w] = img
    tmp = np.zeros((h + 2 * r, w))
    buf = np.empty((h + 2 * r, w))
    for i, kv in enumerate(k):
        np.multiply(pad[:, i:i + w], kv, out=buf)
        tmp += buf
    out = np.zeros((h, w))
    buf = buf[:h]
    for i, kv in enumerate(k):
        np.multiply(tmp[i:i + h], kv, out=buf)
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


def _edt_numpy(feature: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest ``feature`` pixel (pure NumPy, exact).

    The envelope pass runs along the axis with fewer lines that hold a feature.
    """
    if np.count_nonzero(feature.any(axis=0)) > np.count_nonzero(feature.any(axis=1)):
        return _edt_numpy_cols(feature.T).T
    return _edt_numpy_cols(feature)


def _edt_numpy_cols(feature: np.ndarray) -> np.ndarray:
    h, w = feature.shape
    big = 10.0 * (h + w + 1)
    rows = np.arange(h)[:, None]
    up = np.maximum.accumulate(np.where(feature, rows, -big), axis=0)
    down = np.minimum.accumulate(np.where(feature, rows, big)[::-1], axis=0)[::-1]
    g = np.minimum(np.minimum(rows - up, down - rows), big)
    cols = np.flatnonzero(feature.any(axis=0))
    return np.sqrt(_edt_1d_rows(g * g, cols))


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


_SQUARE7 = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)]


def weighted_f_measure(pred: np.ndarray, gt: np.ndarray, beta2: float = 1.0) -> float:
    """Weighted F-measure of a normalised float pred and a bool gt (0 for an empty gt).

    Same algorithm as PySODMetrics (MATLAB's WFb). The 7x7 filtered error is only used on GT
    pixels, so it is computed on the GT's bounding box grown by 3 px.
    """
    if not gt.any():
        return 0.0
    h, w = gt.shape
    rows = np.flatnonzero(gt.any(axis=1))
    cols = np.flatnonzero(gt.any(axis=0))
    r0, r1 = max(int(rows[0]) - 3, 0), min(int(rows[-1]) + 4, h)
    c0, c1 = max(int(cols[0]) - 3, 0), min(int(cols[-1]) + 4, w)
    E = np.abs(pred - gt)
    g = gt[r0:r1, c0:c1]
    e = E[r0:r1, c0:c1]
    nd = _scipy_ndimage()
    if nd is not None:
        dst, (iy, ix) = nd.distance_transform_edt(~gt, return_indices=True)
        # error at each pixel's nearest GT pixel (a GT pixel is its own nearest)
        et = E[iy[r0:r1, c0:c1], ix[r0:r1, c0:c1]]
    else:
        dst = _edt_numpy(gt)
        # only background within 3 px of the GT reaches GT pixels through the 7x7 filter
        ys, xs = np.nonzero(_shifted(g, _SQUARE7, dilate=True) & ~g)
        ny, nx = _nearest_in_band(g, ys, xs)
        et = e.copy()
        et[ys, xs] = e[ny, nx]
    ea = _gauss_filter(et)
    use = g & (ea < e)
    # pixel importance B = 2 - 0.5^(dist/5) off the GT, exactly 1 on it (dist 0)
    Ew = E * (2 - np.exp(np.log(0.5) / 5 * dst))
    Ew[r0:r1, c0:c1][use] = ea[use]
    count = np.count_nonzero(gt)
    fg_sum = float(np.sum(Ew, where=gt))
    TPw = count - fg_sum
    FPw = float(np.sum(Ew)) - fg_sum
    R = 1 - fg_sum / count
    P = TPw / (TPw + FPw + EPS)
    return float((1 + beta2) * R * P / (R + beta2 * P + EPS))


class WeightedFMeasure(_MeanOf):
    """Weighted F-measure (beta^2 = 1, 7x7 Gaussian sigma 5), per image then averaged."""

    key = "weighted_f"

    def __init__(self, beta2: float = 1.0) -> None:
        super().__init__()
        self.beta2 = beta2

    def compute(self, sample: Sample) -> dict[str, Any]:
        return {"weighted_f": weighted_f_measure(sample.pred, sample.gt, self.beta2)}

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
        f = relaxed_boundary_f(sample.pred >= 0.5, sample.gt, self.rho, self.beta2)[0]
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
