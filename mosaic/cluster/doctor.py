"""`python -m mosaic doctor`: what a run on this machine will meet, in a few lines, in a few seconds.

Torch and its CUDA devices (with free memory), the hub (switched off, reachable, the token's user
and whether each gated model `conf/model/` names is open to it; the token itself is never shown),
W&B (offline runs, login for syncing), SLURM (the commands, partitions, `conf/local/` site files)
and the caches (where, how much free disk). Each line starts with `ok` or `--` (missing or off);
network checks give up after `HUB_TIMEOUT_S`.
"""

from __future__ import annotations

import json
import netrc
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mosaic.config import CONF_DIR
from mosaic.infra.errors import first_line

HUB_TIMEOUT_S = 3.0
SLURM_TIMEOUT_S = 4.0
WANDB_HOST = "api.wandb.ai"


@dataclass
class Finding:
    topic: str
    ok: bool
    line: str

    def __str__(self) -> str:
        return f"{'ok' if self.ok else '--'} {self.topic:<7} {self.line}"


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def torch_findings() -> list[Finding]:
    import torch

    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    if not torch.cuda.is_available():
        return [Finding("torch", True, f"{torch.__version__} ({build})"),
                Finding("gpu", False, "no CUDA device visible: jobs run on the CPU (model.device=auto), fine for "
                                      "MiniLM and Gemma 3 270M, far too slow for Gemma 2")]
    findings = [Finding("torch", True, f"{torch.__version__} ({build}), {torch.cuda.device_count()} CUDA device(s)")]
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        findings.append(Finding("gpu", True, f"cuda:{index} {torch.cuda.get_device_name(index)}: {_gib(free)} free "
                                             f"of {_gib(total)}"))
    return findings


def gated_models() -> dict[str, str]:
    """`conf/model` options read from the hub (as their sources say): option name -> hub id."""
    from mosaic.activations.model_sources import model_source
    from mosaic.config.resolved import model_option_config

    found = {}
    for path in sorted((CONF_DIR / "model").glob("*.yaml")):
        cfg = model_option_config(path.stem)
        if items := model_source(cfg).hub_items(cfg):
            found[path.stem] = items[0].repo_id
    return found


def _hub_get(url: str, token: str | None) -> tuple[int, dict]:
    """The HTTP status of a GET and its JSON body (status 0 when the hub cannot be reached in `HUB_TIMEOUT_S`)."""
    request = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=HUB_TIMEOUT_S) as response:
            body = response.read()
            try:
                return response.status, json.loads(body)
            except ValueError:
                return response.status, {}
    except urllib.error.HTTPError as error:
        return error.code, {}
    except (urllib.error.URLError, OSError):
        return 0, {}


def hub_findings() -> list[Finding]:
    from huggingface_hub import constants, get_token

    from mosaic.infra.hub import hub_cache

    fetched = sum(1 for p in hub_cache().glob("*--*") if p.is_dir()) if hub_cache().is_dir() else 0
    cache = Finding("hub", True, f"cache {hub_cache()} (HF_HOME): {fetched} repositories fetched, {_free(hub_cache())}")
    if constants.is_offline_mode():
        return [Finding("hub", False, "HF_HUB_OFFLINE=1: jobs read only the hub cache; `fetch` needs it off "
                                      "(HF_HUB_OFFLINE=0, also for make run/sweep)"), cache]
    token = get_token()
    source = "HF_TOKEN" if os.environ.get("HF_TOKEN") else "stored login"
    status, whoami = _hub_get(f"{constants.ENDPOINT}/api/whoami-v2", token)
    if status == 0:
        return [Finding("hub", False, f"{constants.ENDPOINT} not reachable from here within {HUB_TIMEOUT_S:.0f} s: "
                                      "fetch on a node that reaches it (a login node)"), cache]
    if token is None or status != 200:
        login = "no token: gated models (Gemma) cannot be fetched; `hf auth login` or HF_TOKEN" if token is None \
            else f"the token ({source}) is refused (HTTP {status}): log in again"
        return [Finding("hub", True, f"{constants.ENDPOINT} reachable"), Finding("hub", False, login), cache]
    findings = [Finding("hub", True, f"{constants.ENDPOINT} reachable; logged in as {whoami.get('name', '?')} "
                                     f"(token from {source})")]
    for option, repo in gated_models().items():
        code, _ = _hub_get(f"{constants.ENDPOINT}/api/models/{repo}/auth-check", token)
        findings.append(Finding("licence", code == 200, f"{option} ({repo}): " + (
            "open to this token" if code == 200 else f"not open to this token (HTTP {code}): accept the licence at "
                                                     f"https://huggingface.co/{repo}")))
    return findings + [cache]


def wandb_findings() -> list[Finding]:
    mode = os.environ.get("WANDB_MODE")
    runs = f"WANDB_MODE={mode}" if mode else "runs are written offline (logger.offline=true, the default) to wandb/"
    try:
        logged_in = bool(os.environ.get("WANDB_API_KEY")) or netrc.netrc().authenticators(WANDB_HOST) is not None
    except (OSError, netrc.NetrcParseError):
        logged_in = False
    sync = "logged in: `wandb sync wandb/offline-run-*` uploads them" if logged_in else \
        "not logged in: `wandb login` (where the network is) before `wandb sync`"
    return [Finding("wandb", True, runs), Finding("wandb", logged_in, sync)]


def slurm_findings() -> list[Finding]:
    local = CONF_DIR / "local"
    sites = [f"conf/local/{name}.yaml" for name in ("site", "slurm") if (local / f"{name}.yaml").is_file()]
    site = Finding("slurm", bool(sites), "site config: " + (", ".join(sites) if sites else
                                                           "none (conf/local/slurm.yaml: partition, account, setup)"))
    if shutil.which("sbatch") is None:
        return [Finding("slurm", False, "no sbatch on PATH: grids run here (hydra/launcher=local)"), site,
                requeue_finding()]
    try:
        listed = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True,
                                timeout=SLURM_TIMEOUT_S)
        partitions = " ".join(line.split()[0] for line in listed.stdout.splitlines() if line.strip())
        reach = Finding("slurm", listed.returncode == 0, f"partitions: {partitions}" if listed.returncode == 0
                        else f"sinfo failed: {(listed.stderr.strip().splitlines() or ['?'])[0]}")
    except (OSError, subprocess.TimeoutExpired):
        reach = Finding("slurm", False, f"sinfo gave no answer within {SLURM_TIMEOUT_S:.0f} s")
    return [reach, site, requeue_finding()]


def requeue_finding() -> Finding:
    """What happens to a cell SLURM stops, from `hydra/launcher=slurm` with the site's settings on top."""
    from omegaconf import OmegaConf

    from mosaic.config.schema import SweepConfig

    launcher = OmegaConf.load(CONF_DIR / "hydra" / "launcher" / "slurm.yaml")
    if (site := CONF_DIR / "local" / "slurm.yaml").is_file():
        launcher = OmegaConf.merge(launcher, OmegaConf.load(site))
    requeues = launcher.max_num_timeout
    return Finding("slurm", requeues > 0, f"requeue: a cell stopped at its {launcher.timeout_min}-min limit is "
                   f"requeued up to {requeues} times (signalled {launcher.signal_delay_s} s before; a preemption "
                   "signalled with USR2 whatever the count), resuming from checkpoints saved every "
                   f"{SweepConfig.checkpoint_minutes:g} min (sweep.checkpoint_minutes)")


def _existing(path: Path) -> Path:
    """The path, or its nearest existing parent (a cache folder not created yet)."""
    return next(p for p in (path, *path.parents) if p.exists())


def _free(path: Path) -> str:
    return f"{_gib(shutil.disk_usage(_existing(path)).free)} free"


def cache_findings() -> list[Finding]:
    from mosaic.infra.cache import cache_root

    root = cache_root()
    writable = os.access(_existing(root), os.W_OK)
    return [Finding("cache", writable, f"MOSAIC cache {root} ($MOSAIC_CACHE): {_free(root)}"
                    + ("" if writable else ", not writable"))]


def diagnose() -> list[Finding]:
    """Every check's findings, in a fixed order; the checks that wait on the network or SLURM run side by side."""
    from concurrent.futures import ThreadPoolExecutor

    checks = {"torch": torch_findings, "hub": hub_findings, "wandb": wandb_findings, "slurm": slurm_findings,
              "cache": cache_findings}
    with ThreadPoolExecutor(len(checks)) as pool:
        return [finding for found in pool.map(lambda topic: _checked(topic, checks[topic]), checks)
                for finding in found]


def _checked(topic: str, check: Callable[[], list[Finding]]) -> list[Finding]:
    """A check's findings, or one `--` line saying how it failed: one broken check must not hide the others."""
    try:
        return check()
    except Exception as error:  # noqa: BLE001 - reported as a finding
        return [Finding(topic, False, f"the check failed: {type(error).__name__}: {first_line(error)[:160]}")]


def report() -> str:
    started = time.perf_counter()
    lines = [str(finding) for finding in diagnose()]
    lines.append(f"doctor: {time.perf_counter() - started:.1f} s")
    return "\n".join(lines)

