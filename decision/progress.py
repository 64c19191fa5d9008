"""Progress of the long commands (``nba load``, ``train``, ``simulate``, ``export-log``) on stderr.

A tqdm bar, shown only when stderr is a terminal (tqdm's ``disable=None``): output piped to a file or another
program, the service's logs and the tests stay clean, and stdout keeps only the results.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, *, desc: str, unit: str, total: float | None = None) -> tqdm[T]:
    """A bar over ``iterable`` (or one to ``update`` by hand, ``total`` steps) named ``desc``, counting ``unit``s."""
    return tqdm(
        iterable, desc=desc, unit=unit, total=total, file=sys.stderr, disable=None, mininterval=0.5, dynamic_ncols=True
    )
