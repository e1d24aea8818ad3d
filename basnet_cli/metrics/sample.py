"""The shared input of every measure: a mask's :class:`Truth` and a prepared :class:`Sample`.

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
        # what a measure derives from the mask alone, by measure (e.g. the weighted F's EDT)
        self.cache: dict[str, Any] = {}
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

