"""The explore page: latent contexts against a naive loop and a planted token, the command's refusals, and the
page itself driven in a real browser (Chromium through Playwright)."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from mosaic.report.latents import latent_profiles
from tests.conftest import REPO, compose_config, jumprelu_sae


def _codes(seed: int = 0):
    """Documents of 0-12 token rows over 6 latents, about a third of the values non-zero, some repeated."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 13, 40)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = np.round(rng.random((offsets[-1], 6)) * (rng.random((offsets[-1], 6)) < 0.35), 1)
    return sp.csr_matrix(values), offsets, rng.integers(0, 2, 40)


def test_a_latents_contexts_histogram_and_density_match_a_naive_loop_over_documents():
    codes, offsets, labels = _codes()
    dense = codes.toarray()
    split_of = np.array(["train", "val", "test", "unused"] * 10, dtype=object)
    profiles = latent_profiles(codes, offsets, [4, 1], labels, ["no", "yes"], split_of,
                               lambda documents: [[f"d{d}t{i}" for i in range(offsets[d + 1] - offsets[d])]
                                                  for d in documents], contexts=5, window=2)
    for profile, latent in zip(profiles, [4, 1]):
        peaks = []
        for d in range(40):
            column = dense[offsets[d]:offsets[d + 1], latent]
            if len(column) and column.max() > 0:
                peaks.append((-column.max(), d, int(np.argmax(column))))  # np.argmax: the first of equal values
        expected = sorted(peaks)[:5]
        assert [c["document"] for c in profile.contexts] == [d for _, d, _ in expected]
        for context, (value, d, position) in zip(profile.contexts, expected):
            start = max(0, position - 2)
            assert (context["peak"], context["start"]) == (position, start)
            assert context["tokens"] == [f"d{d}t{i}" for i in range(start, min(offsets[d + 1] - offsets[d],
                                                                                 position + 3))]
            assert context["values"][position - start] == -value
            assert (context["split"], context["label"]) == (split_of[d], ["no", "yes"][labels[d]])
        assert profile.density == pytest.approx(np.count_nonzero(dense[:, latent]) / len(dense))
        document_peak = np.array([dense[offsets[d]:offsets[d + 1], latent].max(initial=0) for d in range(40)])
        edges = np.linspace(0, document_peak.max(), 11)
        assert profile.histogram["counts"]["yes"] == np.histogram(document_peak[labels == 1], edges)[0].tolist()
        assert sum(profile.histogram["counts"]["no"]) == np.sum(labels == 0)


def _sae_job(tmp_path, name, *overrides):
    from mosaic.pipeline import run

    sae = tmp_path / "sae"
    if not sae.exists():
        jumprelu_sae(sae, d_in=32, layer=1)
    cfg = compose_config("model=tiny_gpt2", "layer=1", "sae=local", f"sae.path={sae}", "logger=none",
                         "probe=sklearn", "dataset.limit=40", *overrides)
    return cfg, run(cfg, tmp_path / "sweep" / name)


def _page_data_text(page: str) -> dict:
    """The JSON a page embeds."""
    found = re.search(r'<script id="mosaic-data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(found.group(1))


def _page_data(path: Path) -> dict:
    return _page_data_text(path.read_text(encoding="utf-8"))


def test_a_latent_planted_on_one_token_shows_exactly_the_documents_that_hold_it_peaking_on_it(tmp_path, monkeypatch):
    """The job's cache entry is rewritten as the codes of an SAE whose latent 0 fires on one token id only (found
    with the tokenizer itself, not the page's token strings)."""
    from mosaic.__main__ import main as mosaic_cli
    from mosaic.activations.models import load_tokenizer
    from mosaic.data import load_labelled_documents

    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    cfg, results = _sae_job(tmp_path, "0")
    entry = tmp_path / "cache" / "activations" / results["cache"]["key"]
    codes = sp.load_npz(entry / "codes.npz").tocsr()
    offsets = np.load(entry / "offsets.npy")
    documents = load_labelled_documents(cfg.dataset).documents
    tokenizer = load_tokenizer(cfg.model)
    encoded = tokenizer(list(documents), truncation=True, max_length=cfg.max_length, return_special_tokens_mask=True)
    rows = [[token for token, special in zip(ids, specials) if not special]
            for ids, specials in zip(encoded["input_ids"], encoded["special_tokens_mask"])]
    assert [len(r) for r in rows] == np.diff(offsets).tolist()
    counts = {}
    for ids in rows:
        for token in set(ids):
            counts[token] = counts.get(token, 0) + 1
    planted = min(token for token, n in counts.items() if 2 <= n <= 6
                  and tokenizer.convert_ids_to_tokens(token).isalpha())
    holding = [d for d, ids in enumerate(rows) if planted in ids]
    column = np.zeros(codes.shape[0])
    for d in holding:
        positions = [i for i, token in enumerate(rows[d]) if token == planted]
        column[offsets[d] + np.array(positions)] = 3.0
        column[offsets[d] + positions[0]] = 5.0  # its first occurrence fires most: the peak
    rewritten = sp.hstack([sp.csr_matrix(column[:, None]), codes[:, 1:]], format="csr")
    sp.save_npz(entry / "codes.npz", rewritten, compressed=False)

    assert mosaic_cli(["explore", str(tmp_path / "sweep"), "latent=0"]) == 0
    data = _page_data(tmp_path / "sweep" / "explore.html")
    [job] = data["jobs"]
    [asked] = [card for card in job["cards"] if card.get("asked")]
    profile = data["profiles"][asked["profile"]]
    assert sorted(c["document"] for c in profile["contexts"]) == holding
    spelled = tokenizer.convert_ids_to_tokens(planted)
    for context in profile["contexts"]:
        assert context["peak"] == rows[context["document"]].index(planted) and max(context["values"]) == 5.0
        # The token shown at the peak is the planted one, as the text spells it (this tokenizer lower-cases).
        assert context["tokens"][context["peak"] - context["start"]].strip().lower() == spelled
    assert profile["density"] == pytest.approx(np.count_nonzero(column) / codes.shape[0])


def test_document_text_that_looks_like_markup_stays_data(tmp_path):
    """A text holding "<!-- <script>" or "</script>" must neither end the page's data nor become markup."""
    from mosaic.report.page import render_page

    hostile = "<!-- <script> </script><img src=x onerror=alert(1)> & done"
    data = {"columns": ["job"], "rows": [{"job": hostile}], "directory": hostile, "profiles": {},
            "jobs": [{"metrics": {"test AUROC": float("nan")}, "chosen": {}, "note": hostile, "cards": [],
                      "versus": []}]}
    page = render_page(data)
    assert "<!--" not in page and page.count("<script") == 2 and page.count("</script>") == 2
    assert _page_data_text(page)["rows"][0]["job"] == hostile
    assert _page_data_text(page)["jobs"][0]["metrics"]["test AUROC"] is None


@pytest.mark.parametrize("words, needle", [
    (["latent=x"], "'latent=x' is not a latent request: write latent=N"),
    (["layer=3"], "'layer=3' is not a latent request"),
    (["latent=-1"], "'latent=-1' is not a latent request"),
])
def test_explore_refuses_what_is_not_a_latent_in_one_line_and_writes_nothing(tmp_path, capsys, words, needle):
    from mosaic.__main__ import main as mosaic_cli

    assert mosaic_cli(["explore", str(tmp_path), *words]) == 2
    error = capsys.readouterr().err.strip()
    assert needle in error and len(error.splitlines()) == 1
    assert not (tmp_path / "explore.html").exists()


def test_explore_of_a_directory_without_jobs_is_one_line(tmp_path, capsys):
    from mosaic.__main__ import main as mosaic_cli

    assert mosaic_cli(["explore", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"mosaic: error: no results.json under {tmp_path}"


def _chromium() -> str | None:
    """The Chromium the Linux distribution packages (or `$MOSAIC_CHROMIUM`), when Playwright can drive it."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return None
    return os.environ.get("MOSAIC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no Chromium with Playwright here: `make browser` installs both")
def test_the_default_jobs_page_in_a_real_browser_sorts_filters_and_highlights_each_latents_argmax(tmp_path,
                                                                                                   monkeypatch):
    from playwright.sync_api import sync_playwright

    from mosaic.data import load_labelled_documents
    from mosaic.pipeline import run
    from mosaic.report.explore import write_page
    from tests.test_pipeline import SMALL_SAE

    # The default job (its SAE trained on fewer documents), the same with max pooling, and the hidden state, in a
    # cache of their own: the pipeline's tests expect to build the default job's entries themselves.
    monkeypatch.setenv("MOSAIC_CACHE", str(tmp_path / "cache"))
    sae_results = run(compose_config(*SMALL_SAE, "logger=none"), tmp_path / "sweep" / "0")
    run(compose_config(*SMALL_SAE, "logger=none", "pooling=max"), tmp_path / "sweep" / "1")
    hidden = run(compose_config(*SMALL_SAE, "logger=none", "features=hidden"), tmp_path / "sweep" / "2")
    page_file, _ = write_page(tmp_path / "sweep", latents=(3,))
    labels = np.array(load_labelled_documents(compose_config().dataset).labels)
    truth = labels[sae_results["test_predictions"]["documents"]]
    sae_right = np.array(sae_results["test_predictions"]["predicted"]) == truth
    hidden_right = np.array(hidden["test_predictions"]["predicted"]) == truth
    versus_by_hand = {"both right": int(np.sum(sae_right & hidden_right)),
                      "only SAE right": int(np.sum(sae_right & ~hidden_right)),
                      "only hidden right": int(np.sum(~sae_right & hidden_right)),
                      "both wrong": int(np.sum(~sae_right & ~hidden_right))}
    entry = Path(os.environ["MOSAIC_CACHE"]) / "activations" / sae_results["cache"]["key"]
    codes, offsets = sp.load_npz(entry / "codes.npz").tocsc(), np.load(entry / "offsets.npy")

    artifacts = Path(os.environ.get("MOSAIC_TEST_ARTIFACTS", REPO / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    errors, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(page_file.as_uri())
        rows = page.locator("tr.job")
        assert rows.count() == 3

        def column(name):
            return page.locator(f"tr.job td[data-column={name}]").all_inner_texts()

        page.click("th[data-column=auroc]")
        aurocs = [float(value) for value in column("auroc")]
        assert aurocs == sorted(aurocs)
        page.click("th[data-column=auroc]")
        assert [float(value) for value in column("auroc")] == sorted(aurocs, reverse=True)
        page.fill("#filter", "hidden")
        assert column("features") == ["hidden"]
        page.locator("tr.job").first.click()
        assert "no contexts" in page.locator("#job .note").inner_text().lower()
        # The hidden state against the SAE job at its setting (mean pooling), document by document.
        [versus] = page.locator("#job .versus").all()  # paired with the SAE job at its setting only
        assert versus.locator("h3").inner_text().startswith("Hidden state (job 2) vs SAE (job 0)")
        outcome = {row.locator("td").first.inner_text(): int(row.locator("td").last.inner_text())
                   for row in versus.locator(".versus-counts tr").all()}
        assert outcome == versus_by_hand
        page.fill("#filter", "sae mean")
        assert column("job") == ["0"]
        page.locator("tr.job").first.click()
        cards = page.locator("#job .card")
        assert cards.count() == len(sae_results["top_features"]) + 1  # the probe's top features and latent 3
        checked = 0
        for index in range(cards.count()):
            card = cards.nth(index)
            latent = int(card.get_attribute("data-latent"))
            column_values = codes[:, latent].toarray().ravel()
            for context in card.locator(".context").all():
                d = int(context.get_attribute("data-document"))
                # The cache's own argmax for this latent in this document (the first of equal values).
                assert int(context.locator(".token.peak").get_attribute("data-position")) == int(
                    np.argmax(column_values[offsets[d]:offsets[d + 1]]))
                checked += 1
        assert checked > 20
        page.screenshot(path=str(artifacts / "explore.png"), full_page=False)
        browser.close()
    assert errors == []
    assert all(url.startswith("file:") for url in requests), requests
