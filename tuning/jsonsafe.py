"""JSON-safe values for what the training pipeline returns and registers: ``nan`` and
``±inf`` become ``None`` (``json.dumps(..., allow_nan=False)`` then works), numpy scalars
become Python numbers. Example: ``jsonable({"ap": np.float64("nan"), "n": np.int64(3),
"t": (1.5, np.inf)})`` → ``{"ap": None, "n": 3, "t": [1.5, None]}``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def json_number(v: Any) -> Any:
    """JSON-safe number: ``nan``/``±inf`` → ``None``; numpy scalars → Python."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v


def jsonable(obj: Any) -> Any:
    """``obj`` with every number JSON-safe (:func:`json_number`), recursively through dicts,
    lists and tuples (tuples become lists); other values as they are."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return json_number(obj)
