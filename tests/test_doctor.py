"""`python -m mosaic doctor`: what it says here (no GPU, hub off) and against a local hub stand-in."""

import pytest
import torch

from mosaic.cluster import doctor
from mosaic.cluster.doctor import diagnose, gated_models, report
from tests.hub_stand_in import HubStandIn


def _lines(findings, topic):
    return [f for f in findings if f.topic == topic]


def test_doctor_names_what_is_missing_on_a_machine_without_gpu_or_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    findings = diagnose()
    [hub_off, _] = _lines(findings, "hub")
    assert not hub_off.ok and "HF_HUB_OFFLINE=1" in hub_off.line  # tests run with the hub off
    [cache] = _lines(findings, "cache")
    assert cache.ok and str(tmp_path / "cache") in cache.line and "GiB free" in cache.line
    if not torch.cuda.is_available():
        [gpu] = _lines(findings, "gpu")
        assert not gpu.ok and "no CUDA device" in gpu.line


def test_doctor_reports_the_requeue_settings_with_the_sites_own_on_top(monkeypatch, tmp_path):
    site = tmp_path / "conf"
    (site / "hydra" / "launcher").mkdir(parents=True)
    (site / "local").mkdir()
    launcher = "timeout_min: 120\nsignal_delay_s: 120\nmax_num_timeout: 3\n"
    (site / "hydra" / "launcher" / "slurm.yaml").write_text(launcher)
    monkeypatch.setattr(doctor, "CONF_DIR", site)
    assert doctor.requeue_finding().line.startswith("requeue: a cell stopped at its 120-min limit is requeued up to "
                                                    "3 times (signalled 120 s before")
    (site / "local" / "slurm.yaml").write_text("timeout_min: 30\nmax_num_timeout: 0\n")
    finding = doctor.requeue_finding()
    assert not finding.ok and "its 30-min limit is requeued up to 0 times" in finding.line


def test_gated_models_are_the_hub_models_conf_declares():
    gemma3 = {f"gemma3_{size}{suffix}": f"google/gemma-3-{size}{hub}" for size in ("1b", "4b", "12b", "27b")
              for suffix, hub in (("", "-pt"), ("_it", "-it"))}
    assert gated_models() == {"gemma2_2b": "google/gemma-2-2b", "gemma2_9b": "google/gemma-2-9b",
                              "gemma2_9b_it": "google/gemma-2-9b-it", "paligemma2_3b": "google/paligemma2-3b-pt-224",
                              "gemma3_270m_hub": "google/gemma-3-270m", "gemma3_270m_it": "google/gemma-3-270m-it",
                              **gemma3}


@pytest.fixture
def online_hub(monkeypatch, tmp_path):
    """The hub client pointed at a stand-in, switched on, with a token in HF_TOKEN."""
    from huggingface_hub import constants

    stand_in = HubStandIn(token="hf_doctor_secret")
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "config.json").write_text("{}")
    server, url = stand_in.serve()
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(doctor, "HUB_TIMEOUT_S", 60.0)  # a busy test machine may answer slowly
    monkeypatch.setenv("HF_TOKEN", stand_in.token)
    yield stand_in, tmp_path / "repo"
    server.shutdown()
    server.server_close()


def test_doctor_reports_the_tokens_user_and_which_licences_it_accepted_without_showing_the_token(online_hub):
    stand_in, repo = online_hub
    models = gated_models()
    for option, repo_id in models.items():
        stand_in.add("model", repo_id, repo, gated=True, accepted=option != "gemma2_9b")
    findings = diagnose()
    assert any(f.ok and "logged in as stand-in-user (token from HF_TOKEN)" in f.line for f in _lines(findings, "hub"))
    licences = {f.line.split(" ")[0]: f.ok for f in _lines(findings, "licence")}
    assert licences == {option: option != "gemma2_9b" for option in models}
    assert stand_in.token not in report()


def test_a_check_that_breaks_is_one_line_and_the_others_still_report(monkeypatch):
    def broken():
        raise RuntimeError("sinfo printed nonsense\nsecond line")

    monkeypatch.setattr(doctor, "slurm_findings", broken)
    findings = diagnose()
    [slurm] = _lines(findings, "slurm")
    assert str(slurm) == "-- slurm   the check failed: RuntimeError: sinfo printed nonsense"
    assert {"torch", "hub", "wandb", "cache"} <= {f.topic for f in findings}
