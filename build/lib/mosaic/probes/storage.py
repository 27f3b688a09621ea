"""How a probe is stored: its arrays in `weights.safetensors`, everything else in `probe.json`; no pickle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from mosaic.infra.errors import MosaicError


def write_probe(directory: Path, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_file({name: np.ascontiguousarray(array) for name, array in arrays.items()},
              str(directory / "weights.safetensors"))
    (directory / "probe.json").write_text(json.dumps(metadata, indent=2))


def read_probe(directory: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    directory = Path(directory)
    if not (directory / "weights.safetensors").is_file() or not (directory / "probe.json").is_file():
        raise MosaicError(f"probe.load={str(directory)!r} is not a saved probe: it needs weights.safetensors and "
                          "probe.json (every job writes them to JOB_DIR/probe)")
    return load_file(str(directory / "weights.safetensors")), json.loads((directory / "probe.json").read_text())
