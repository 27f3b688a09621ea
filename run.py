"""MOSAIC's entry point: compose the Hydra config, validate it, run one job of the pipeline.

`python run.py` runs the default job; `python run.py -m pooling=mean,max` runs a grid. Heavy
libraries are imported only after validation so that `--help`, `--cfg job` and bad values are fast.
"""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mosaic.config import check_group_overrides, validate
from mosaic.errors import MosaicError

CONF = Path(__file__).resolve().parent / "conf"


def _exit_with(error: MosaicError) -> None:
    print(f"mosaic: error: {error}", file=sys.stderr)
    raise SystemExit(2)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        validate(cfg)
        from mosaic.pipeline import run
        from mosaic.sweep import current_sweep

        return run(cfg, Path(HydraConfig.get().runtime.output_dir), current_sweep())["metrics"]["macro_f1"]
    except MosaicError as error:
        _exit_with(error)


if __name__ == "__main__":
    try:
        check_group_overrides(sys.argv[1:], CONF)
    except MosaicError as error:
        _exit_with(error)
    main()
