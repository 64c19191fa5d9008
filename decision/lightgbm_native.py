"""LightGBM's own C API for serving: the same predictions as ``lightgbm.Booster.predict``, without its overhead.

``Booster.predict`` re-checks its input and rebuilds its parameters on every call: ~125 us for 8 rows here,
of which the trees take ~55 us; one row's leaf indices take ~75 us against ~20 us. The C API is LightGBM's
documented public interface (c_api.h), and the library is the one the lightgbm wheel ships, so predictions are
bit-for-bit LightGBM's (a property test checks it, NaN and infinity included).
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
# One thread: LightGBM's OpenMP pool fights the gRPC threads under load (PERFORMANCE.md).
_PARAMETERS = b"num_threads=1"


def _library() -> str:
    """The lib_lightgbm the lightgbm wheel ships (the one ``lightgbm.Booster`` itself runs on)."""
    package = Path(lightgbm.__file__).parent
    for name in ("lib_lightgbm.so", "lib_lightgbm.dylib", "lib_lightgbm.dll"):
        for folder in (package / "lib", package / "bin", package.parent):
            if (folder / name).is_file():
                return str(folder / name)
    raise FileNotFoundError(f"no lib_lightgbm library in the lightgbm package at {package}")


# PyDLL keeps the GIL during the call: a ~50 us prediction is cheaper than waiting to get the GIL back from
# another thread afterwards (measured: 200 us per call under the decision-log writer with ctypes.CDLL).
_lib = ctypes.PyDLL(_library())
_lib.LGBM_GetLastError.restype = ctypes.c_char_p


def _check(code: int) -> None:
    if code != 0:
        raise RuntimeError(f"LightGBM: {_lib.LGBM_GetLastError().decode()}")


class NativeBooster:
    """A LightGBM model loaded through the C API; predictions for float64 row-major matrices."""

    def __init__(self, model_file: Path) -> None:
        self._handle = ctypes.c_void_p()
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

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """The model's output (probability for a binary model), one per row."""
        return self._predict(rows, _PREDICT_NORMAL, 1)

    def predict_raw(self, rows: np.ndarray) -> np.ndarray:
        """The raw score (log-odds for a binary model), one per row."""
        return self._predict(rows, _PREDICT_RAW_SCORE, 1)

    def leaves(self, rows: np.ndarray) -> np.ndarray:
        """The leaf index each row reaches in each tree: shape (rows, trees)."""
        return self._predict(rows, _PREDICT_LEAF_INDEX, self.num_trees).astype(np.int32).reshape(len(rows), -1)

    def _predict(self, rows: np.ndarray, kind: int, per_row: int) -> np.ndarray:
        data = np.ascontiguousarray(rows, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self.num_feature:
            raise ValueError(f"expected rows of {self.num_feature} features, got shape {data.shape}")
        out = np.empty(data.shape[0] * per_row, dtype=np.float64)
        written = ctypes.c_int64()
        _check(_lib.LGBM_BoosterPredictForMat(
            self._handle,
            data.ctypes.data_as(ctypes.c_void_p),
            ctypes.c_int(_DTYPE_FLOAT64),
            ctypes.c_int32(data.shape[0]),
            ctypes.c_int32(data.shape[1]),
            ctypes.c_int(_ROW_MAJOR),
            ctypes.c_int(kind),
            ctypes.c_int(0),  # start iteration
            ctypes.c_int(-1),  # all iterations
            ctypes.c_char_p(_PARAMETERS),
            ctypes.byref(written),
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
        ))  # fmt: skip
        return out[: written.value]

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and handle.value:
            _lib.LGBM_BoosterFree(handle)
