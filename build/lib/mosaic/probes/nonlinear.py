"""Non-linear baselines, as the sparse-probing suite fits them (`find_best_knn`, `find_best_mlp`,
`find_best_xgboost`): standardised features, hyper-parameters chosen on validation.

- `knn`: k nearest neighbours, k over unique(logspace(0, log2(min(rows - 1, 100)), 10, base 2));
- `mlp`: scikit-learn's MLPClassifier (adam, relu, 1,000 iterations), its setting drawn at random from
  the suite's space (`MLP_SEARCH` draws; the suite draws one);
- `boosted_trees`: XGBoost (the CPU build), `BOOSTED_SEARCH` settings drawn at random from the suite's space.

Each is stored without pickle: kNN keeps its training rows, the MLP its weight arrays (predicting with
a NumPy forward pass), XGBoost its model as XGBoost's own JSON. Their `evidence` is the standardised
class-mean difference of the training rows: which features separate the classes in what the model
saw, not a reading of the model, which has no per-feature weights.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.preprocessing import StandardScaler

from mosaic.probes.linear_baselines import dense
from mosaic.probes.selection import best_on_validation
from mosaic.probes.storage import write_probe

MLP_SEARCH = 1
BOOSTED_SEARCH = 10
_MLP_SPACE = {
    "hidden_layer_sizes": [(16,), (32,), (64,), (16, 16), (32, 32), (64, 64), (16, 16, 16), (32, 32, 32), (64, 64, 64)],
    "learning_rate_init": np.logspace(-4, -2, num=5).tolist(),
    "alpha": np.logspace(-5, -2, num=5).tolist(),
}
_BOOSTED_SPACE = {
    "n_estimators": list(range(50, 300, 50)), "max_depth": list(range(2, 6)),
    "learning_rate": np.logspace(-3, -1, num=10).tolist(), "subsample": np.linspace(0.7, 1.0, num=5).tolist(),
    "colsample_bytree": np.linspace(0.7, 1.0, num=5).tolist(), "reg_alpha": np.logspace(-3, 1, num=10).tolist(),
    "reg_lambda": np.logspace(-3, 1, num=10).tolist(), "min_child_weight": list(range(1, 10)),
}


@dataclass(kw_only=True)
class _Standardised:
    """What every non-linear baseline shares: the columns it reads (of `width`) and their standardisation.

    Integers are stored as 0-d arrays beside the weights, so `from_tensors` needs nothing else.
    """

    mean: np.ndarray
    scale: np.ndarray
    columns: np.ndarray
    width: int
    evidence_matrix: np.ndarray
    n_classes: int
    summary: dict = field(default_factory=dict)

    kind: ClassVar[str] = ""

    @property
    def n_features(self) -> int:
        return self.width

    def standardised(self, features) -> np.ndarray:
        return (dense(features[:, self.columns]) - self.mean) / self.scale

    def evidence(self) -> np.ndarray:
        return self.evidence_matrix

    def predict(self, features) -> np.ndarray:
        return self.predict_proba(features).argmax(axis=1)

    def _constructor(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in fields(self)}

    def widened(self, columns: np.ndarray, width: int):
        evidence = np.zeros((self.evidence_matrix.shape[0], width))
        evidence[:, columns] = self.evidence_matrix
        return type(self)(**{**self._constructor(), "columns": np.asarray(columns)[self.columns], "width": width,
                             "evidence_matrix": evidence, "summary": dict(self.summary)})

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(value) for name, value in self._constructor().items() if name != "summary"}

    def save(self, directory: Path, metadata: dict[str, Any]) -> None:
        write_probe(directory, self.arrays(), {**metadata, "kind": self.kind, "summary": self.summary})

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], summary: dict):
        stored = {item.name: int(tensors[item.name].reshape(-1)[0]) if item.type == "int" else tensors[item.name]
                  for item in fields(cls) if item.name in tensors}
        return cls(**stored, summary=summary)


def _standardise(x_train: np.ndarray, y_train: np.ndarray, n_classes: int) -> tuple[dict[str, Any], np.ndarray]:
    """The fields every baseline shares (standardisation, evidence), and the standardised training rows."""
    scaler = StandardScaler().fit(x_train)
    scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
    z = (x_train - scaler.mean_) / scale
    evidence = np.zeros((n_classes, x_train.shape[1]))
    for c in np.unique(y_train):
        evidence[c] = z[y_train == c].mean(axis=0) - z.mean(axis=0)
    shared = {"mean": scaler.mean_, "scale": scale, "columns": np.arange(x_train.shape[1]), "width": x_train.shape[1],
              "evidence_matrix": evidence, "n_classes": n_classes}
    return shared, z


def _full_proba(proba: np.ndarray, seen: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((proba.shape[0], n_classes))
    out[:, seen] = proba
    return out


@dataclass(kw_only=True)
class KNNProbe(_Standardised):
    """k nearest neighbours among the stored (standardised) training rows, by Euclidean distance."""

    rows: np.ndarray
    labels: np.ndarray
    n_neighbors: int
    kind: ClassVar[str] = "knn"

    def predict_proba(self, features) -> np.ndarray:
        from sklearn.neighbors import KNeighborsClassifier

        model = KNeighborsClassifier(n_neighbors=self.n_neighbors).fit(self.rows, self.labels)
        return _full_proba(model.predict_proba(self.standardised(features)), model.classes_, self.n_classes)


def fit_knn_probe(x_train, y_train, x_val, y_val, n_classes: int, cfg, seed: int, logger=False,
                  only: int | None = None) -> KNNProbe:
    x_train = dense(x_train)
    shared, rows = _standardise(x_train, y_train, n_classes)
    most = max(1, min(len(x_train) - 1, 100))
    grid = [only] if only is not None else np.unique(np.logspace(0, np.log2(most), num=10, base=2, dtype=int)).tolist()

    def fit_at(k: int) -> KNNProbe:
        return KNNProbe(**shared, rows=rows, labels=y_train, n_neighbors=int(k), summary={"n_neighbors": int(k)})

    _, probe, scores = best_on_validation(grid, fit_at, x_val, y_val, cfg.select_by)
    probe.summary[f"val_{cfg.select_by}_by_n_neighbors"] = scores
    return probe


@dataclass(kw_only=True)
class MLPProbe(_Standardised):
    """A ReLU network's layers (weight, bias), applied in NumPy; softmax (or, for two classes, logistic) output."""

    layers: list[tuple[np.ndarray, np.ndarray]]
    classes: np.ndarray
    kind: ClassVar[str] = "mlp"

    def arrays(self) -> dict[str, np.ndarray]:
        arrays = {name: np.asarray(value) for name, value in self._constructor().items()
                  if name not in ("summary", "layers")}
        for i, (weight, bias) in enumerate(self.layers):
            arrays[f"layer_{i}_weight"], arrays[f"layer_{i}_bias"] = weight, bias
        return arrays

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], summary: dict) -> MLPProbe:
        count = sum(name.endswith("_weight") for name in tensors)
        return cls(mean=tensors["mean"], scale=tensors["scale"], columns=tensors["columns"],
                   width=int(tensors["width"].reshape(-1)[0]), evidence_matrix=tensors["evidence_matrix"],
                   n_classes=int(tensors["n_classes"].reshape(-1)[0]), classes=tensors["classes"], summary=summary,
                   layers=[(tensors[f"layer_{i}_weight"], tensors[f"layer_{i}_bias"]) for i in range(count)])

    def predict_proba(self, features) -> np.ndarray:
        activation = self.standardised(features)
        for weight, bias in self.layers[:-1]:
            activation = np.maximum(activation @ weight + bias, 0)
        logits = activation @ self.layers[-1][0] + self.layers[-1][1]
        if logits.shape[1] == 1:  # binary: sklearn's logistic output for the second class
            positive = 1 / (1 + np.exp(-logits[:, 0]))
            proba = np.column_stack([1 - positive, positive])
        else:
            logits = logits - logits.max(axis=1, keepdims=True)
            proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return _full_proba(proba, self.classes, self.n_classes)


def boosted_draws(count: int, seed: int) -> list[dict[str, Any]]:
    """The suite's XGBoost settings: `random.Random(seed).choice` per key, in its order."""
    rng = random.Random(seed)
    return [{name: rng.choice(values) for name, values in _BOOSTED_SPACE.items()} for _ in range(count)]


def mlp_draws(count: int, seed: int) -> list[dict[str, Any]]:
    """The suite's MLP settings: NumPy's `RandomState(seed)`, drawing the layers, the rate, then the penalty."""
    rng = np.random.RandomState(seed)
    draws = []
    for _ in range(count):
        layers = _MLP_SPACE["hidden_layer_sizes"][rng.randint(len(_MLP_SPACE["hidden_layer_sizes"]))]
        rate = _MLP_SPACE["learning_rate_init"][rng.randint(len(_MLP_SPACE["learning_rate_init"]))]
        draws.append({"hidden_layer_sizes": layers, "learning_rate_init": rate,
                      "alpha": float(rng.choice(_MLP_SPACE["alpha"]))})
    return draws


def fit_mlp_probe(x_train, y_train, x_val, y_val, n_classes: int, cfg, seed: int, logger=False,
                  only: int | None = None) -> MLPProbe:
    from sklearn.neural_network import MLPClassifier

    x_train = dense(x_train)
    shared, rows = _standardise(x_train, y_train, n_classes)
    draws = mlp_draws(MLP_SEARCH, seed)

    def fit_at(index: int) -> MLPProbe:
        model = MLPClassifier(max_iter=1000, random_state=seed, **draws[index]).fit(rows, y_train)
        return MLPProbe(**shared, layers=list(zip(model.coefs_, model.intercepts_)), classes=model.classes_,
                        summary={**draws[index], "hidden_layer_sizes": list(draws[index]["hidden_layer_sizes"]),
                                 "draw": index, "iterations": int(model.n_iter_)})

    grid = [only] if only is not None else list(range(len(draws)))
    _, probe, scores = best_on_validation(grid, fit_at, x_val, y_val, cfg.select_by)
    probe.summary[f"val_{cfg.select_by}_by_draw"] = scores
    return probe


@dataclass(kw_only=True)
class BoostedProbe(_Standardised):
    """Gradient-boosted trees (XGBoost), kept as XGBoost's JSON model (`model_json`, UTF-8 bytes)."""

    model_json: np.ndarray
    classes: np.ndarray
    kind: ClassVar[str] = "boosted_trees"

    def _booster(self):
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(bytearray(self.model_json.tobytes()))
        return booster

    def predict_proba(self, features) -> np.ndarray:
        import xgboost

        raw = self._booster().predict(xgboost.DMatrix(self.standardised(features)))
        proba = np.column_stack([1 - raw, raw]) if raw.ndim == 1 else raw
        return _full_proba(proba, self.classes, self.n_classes)


def fit_boosted_probe(x_train, y_train, x_val, y_val, n_classes: int, cfg, seed: int, logger=False,
                      only: int | None = None) -> BoostedProbe:
    import xgboost

    x_train = dense(x_train)
    shared, rows = _standardise(x_train, y_train, n_classes)
    classes, encoded = np.unique(y_train, return_inverse=True)
    draws = boosted_draws(BOOSTED_SEARCH, seed)

    def fit_at(index: int) -> BoostedProbe:
        model = xgboost.XGBClassifier(**draws[index], eval_metric="logloss", random_state=seed, n_jobs=1)
        model.fit(rows, encoded)
        saved = np.frombuffer(bytes(model.get_booster().save_raw(raw_format="json")), dtype=np.uint8)
        return BoostedProbe(**shared, model_json=saved, classes=classes, summary={**draws[index], "draw": index})

    grid = [only] if only is not None else list(range(len(draws)))
    _, probe, scores = best_on_validation(grid, fit_at, x_val, y_val, cfg.select_by)
    probe.summary[f"val_{cfg.select_by}_by_draw"] = scores
    return probe
