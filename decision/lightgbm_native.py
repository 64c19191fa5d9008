"""LightGBM's own C API for serving: the same predictions as ``lightgbm.Booster.predict``, without its overhead.

``Booster.predict`` re-checks its input and rebuilds its parameters on every call, which for the few rows a
decision scores costs more than walking the trees (and more again for one row's leaf indices). The C API is
LightGBM's documented public interface (c_api.h), and the library is the one the lightgbm wheel ships, so
predictions are bit-for-bit LightGBM's (a property test checks it, NaN and infinity included).

A few rows go one at a time through ``LGBM_BoosterPredictForMatSingleRowFast``, whose parameters are parsed
once, at load: ``LGBM_BoosterPredictForMat`` parses its parameter string, builds a predictor and starts an
OpenMP region on every call before it walks the first tree, where the single-row call only walks the trees
(callgrind; what it saved a decision: benchmarks/RESULTS.md, the notes of 2026-11-30). The matrix call's fixed
cost is paid once for all rows, so from about 9 rows on it is cheaper and takes over.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import lightgbm
import numpy as np

_PREDICT_NORMAL = 0
_PREDICT_RAW_SCORE = 1
_PREDICT_LEAF_INDEX = 2
_DTYPE_FLOAT64 = 1
_ROW_MAJOR = 1
# One thread: LightGBM's OpenMP pool fights the gRPC threads for the cores under load.
_PARAMETERS = b"num_threads=1"
# Up to this many rows one single-row call each, beyond it one matrix call (break-even measured at about 9 rows).
_ROWS_ONE_BY_ONE = 8


def _library() -> str:
    """The lib_lightgbm the lightgbm wheel ships (the one ``lightgbm.Booster`` itself runs on)."""
    package = Path(lightgbm.__file__).parent
    for name in ("lib_lightgbm.so", "lib_lightgbm.dylib", "lib_lightgbm.dll"):
        for folder in (package / "lib", package / "bin", package.parent):
            if (folder / name).is_file():
                return str(folder / name)
    raise FileNotFoundError(f"no lib_lightgbm library in the lightgbm package at {package}")


# PyDLL keeps the GIL during the call: a prediction this short is cheaper than waiting to get the GIL back from
# another thread afterwards (measured under the decision-log writer: ctypes.CDLL's calls took several times longer).
# It also makes the calls of all threads take turns, which the shared fast configurations below rely on.
_lib = ctypes.PyDLL(_library())
_lib.LGBM_GetLastError.restype = ctypes.c_char_p
# Declared argument types let plain ints and bytes through: a ctypes.c_int or ``data_as`` per argument cost
# a noticeable part of a one-row call.
_predict_for_mat = _lib.LGBM_BoosterPredictForMat
_predict_for_mat.argtypes = [
    ctypes.c_void_p,  # booster
    ctypes.c_void_p,  # data
    ctypes.c_int,  # data type
    ctypes.c_int32,  # rows
    ctypes.c_int32,  # columns
    ctypes.c_int,  # row major
    ctypes.c_int,  # predict type
    ctypes.c_int,  # start iteration
    ctypes.c_int,  # number of iterations (-1: all)
    ctypes.c_char_p,  # parameters
    ctypes.c_void_p,  # out: values written
    ctypes.c_void_p,  # out: results
]
_predict_row_fast = _lib.LGBM_BoosterPredictForMatSingleRowFast
_predict_row_fast.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]


def _check(code: int) -> None:
    if code != 0:
        raise RuntimeError(f"LightGBM: {_lib.LGBM_GetLastError().decode()}")


class NativeBooster:
    """A LightGBM model loaded through the C API; predictions for float64 row-major matrices."""

    def __init__(self, model_file: Path) -> None:
        self._handle = ctypes.c_void_p()
        self._fast: dict[int, ctypes.c_void_p] = {}
        iterations = ctypes.c_int()
        _check(
            _lib.LGBM_BoosterCreateFromModelfile(
                str(model_file).encode(), ctypes.byref(iterations), ctypes.byref(self._handle)
            )
        )
        features, trees = ctypes.c_int(), ctypes.c_int()
        _check(_lib.LGBM_BoosterGetNumFeature(self._handle, ctypes.byref(features)))
        _check(_lib.LGBM_BoosterNumModelPerIteration(self._handle, ctypes.byref(trees)))
        if trees.value != 1:
            raise ValueError(f"{model_file}: expected a single-output model, got {trees.value} outputs per round")
        self.num_feature = features.value
        self.num_trees = iterations.value
        for kind in (_PREDICT_NORMAL, _PREDICT_RAW_SCORE, _PREDICT_LEAF_INDEX):
            fast = ctypes.c_void_p()
            _check(_lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                self._handle,
                ctypes.c_int(kind),
                ctypes.c_int(0),  # start iteration
                ctypes.c_int(-1),  # all iterations
                ctypes.c_int(_DTYPE_FLOAT64),
                ctypes.c_int32(self.num_feature),
                ctypes.c_char_p(_PARAMETERS),
                ctypes.byref(fast),
            ))  # fmt: skip
            self._fast[kind] = fast

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """The model's output (probability for a binary model), one per row."""
        return self._predict(rows, _PREDICT_NORMAL, 1)

    def predict_raw(self, rows: np.ndarray) -> np.ndarray:
        """The raw score (log-odds for a binary model), one per row."""
        return self._predict(rows, _PREDICT_RAW_SCORE, 1)

    def leaves(self, rows: np.ndarray) -> np.ndarray:
        """The leaf index each row reaches in each tree: shape (rows, trees)."""
        return self._predict(rows, _PREDICT_LEAF_INDEX, self.num_trees).astype(np.int32).reshape(-1, self.num_trees)

    def _predict(self, rows: np.ndarray, kind: int, per_row: int) -> np.ndarray:
        data = np.ascontiguousarray(rows, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self.num_feature:
            raise ValueError(f"expected rows of {self.num_feature} features, got shape {data.shape}")
        n_rows = data.shape[0]
        # The results go into a ctypes array, whose address is free, viewed by numpy: cheaper than asking an
        # ndarray for its address (``.ctypes.data`` builds an object each time), as the input still does.
        out = (ctypes.c_double * (n_rows * per_row))()
        data_at, out_at = data.ctypes.data, ctypes.addressof(out)
        written = ctypes.c_int64()
        if n_rows <= _ROWS_ONE_BY_ONE:
            fast, written_at = self._fast[kind].value, ctypes.addressof(written)
            row_bytes, out_bytes = data.strides[0], 8 * per_row
            for row in range(n_rows):
                _check(_predict_row_fast(fast, data_at + row * row_bytes, written_at, out_at + row * out_bytes))
            return np.frombuffer(out, dtype=np.float64)
        _check(_predict_for_mat(
            self._handle, data_at, _DTYPE_FLOAT64, n_rows, self.num_feature, _ROW_MAJOR, kind,
            0,  # start iteration
            -1,  # all iterations
            _PARAMETERS, ctypes.addressof(written), out_at,
        ))  # fmt: skip
        return np.frombuffer(out, dtype=np.float64)[: written.value]

    def __del__(self) -> None:
        for fast in getattr(self, "_fast", {}).values():
            if fast.value:
                _lib.LGBM_FastConfigFree(fast)
        handle = getattr(self, "_handle", None)
        if handle is not None and handle.value:
            _lib.LGBM_BoosterFree(handle)
