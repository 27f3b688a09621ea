"""What a researcher reads of a job at the end of its run: the SAE's quality in a line, and the summary table."""

from __future__ import annotations

from typing import Any


def sae_name(sae: dict[str, Any]) -> str:
    """The SAE's short, stable name as its source recorded it (`features.sae.name`: a release and id, a local
    path, a trained SAE's cache key), or, for results written before sources named their SAEs, its fields."""
    if "name" in sae:
        return sae["name"]
    parts = [str(sae[key]) for key in ("release", "id", "path") if key in sae] or [str(sae.get("key", ""))[:12]]
    return " ".join([str(sae.get("source")), *parts])


def sae_quality_scalars(features: dict[str, Any]) -> dict[str, float]:
    """The SAE's quality as flat numbers (FVU, L0, dead and always-on fractions, next-token loss increase and KL)."""
    quality = features.get("sae_quality") or {}
    loss = quality.get("next_token_loss") or {}
    found = {k: quality.get(k) for k in ("fvu", "l0", "dead_fraction", "always_on_fraction")}
    reference = quality.get("reference") or {}
    found.update({f"reference_{k}": reference.get(k) for k in ("dead_fraction", "always_on_fraction")})
    found.update({k: loss.get(k) for k in ("ce_increase", "kl", "loss_recovered")})
    return {k: v for k, v in found.items() if v is not None}


def quality_line(quality: dict[str, Any]) -> str:
    if not quality.get("tokens"):
        return "quality not measured (no tokens)"
    line = (f"FVU {quality['fvu']:.3f}   L0 {quality['l0']:.1f}   dead {quality['dead_fraction']:.1%}   "
            f"always on {quality['always_on_fraction']:.1%}   ({quality['tokens']} tokens")
    if reference := quality.get("reference"):
        line += (f"; on the first {reference['tokens']}: dead {reference['dead_fraction']:.1%}, "
                 f"always on {reference['always_on_fraction']:.1%}")
    line += ")" if quality["held_out"] else ", not held out: the SAE trained on this training split)"
    loss = quality.get("next_token_loss")
    if loss and "error" in loss:
        line += f"   next-token loss not measured ({loss['error']})"
    elif loss:
        recovered = "" if loss["loss_recovered"] is None else f", {loss['loss_recovered']:.0%} recovered"
        line += (f"   next-token loss {loss['ce_clean']:.3f} -> {loss['ce_sae']:.3f} "
                 f"(+{loss['ce_increase']:.3f}, KL {loss['kl']:.3f}{recovered})")
    return line


def summary_table(results: dict[str, Any]) -> str:
    """A few aligned lines a researcher reads at the end of a run."""
    cfg, metrics, features = results["config"], results["metrics"], results["features"]
    auroc = metrics["auroc"]
    validation = "none (no validation rows)" if metrics["val"] is None else f"{metrics['val']['macro_f1']:.3f}"
    chosen = "   ".join(f"{name} {value['chosen']}" for name, value in results["hyperparameters"].items())
    rows = [
        ("job", f"{cfg['dataset']['name']} | {cfg['model']['name']} layer {cfg['layer']} | "
                f"{features['type']} ({features['n_features']} features) | pooling {cfg['pooling']['method']} | "
                f"binarize {cfg['binarize']['method']} | probe {cfg['probe']['type']} ({chosen})"),
        ("macro F1", f"test {metrics['macro_f1']:.3f}   validation {validation}"),
    ]
    if "cv" in metrics:
        cv = metrics["cv"]
        caveat = "" if cv["held_out"] else f" (not held out: {cv['not_held_out']})"
        rows.append(("CV", f"{cv['folds']}-fold on train+val: macro F1 {cv['macro_f1_mean']:.3f} ± "
                           f"{cv['macro_f1_std']:.3f}{caveat}"))
    rows += [
        ("accuracy", f"{metrics['accuracy']:.3f}   balanced {metrics['balanced_accuracy']:.3f}   "
                     f"AUROC {'n/a' if auroc is None else f'{auroc:.3f}'}"),
        ("documents", "   ".join(f"{k} {results['splits'][k]}" for k in ("train", "val", "test"))),
        ("time (s)", "   ".join(f"{k} {v:.1f}" for k, v in results["timings_s"].items())),
        ("cache", {True: "hit", False: "miss", None: "not used"}[results["cache"]["hit"]]),
    ]
    if features.get("sae_quality"):
        rows.append(("SAE", quality_line(features["sae_quality"])))
    if behaviour := results.get("behaviour"):
        rows.append(("behaviour", f"labels: {behaviour['model']}'s answers, accuracy {behaviour['accuracy']:.3f} on "
                                  f"{behaviour['documents']} documents; test base rate "
                                  f"{behaviour['test_base_rate']:.3f} correct (majority accuracy "
                                  f"{behaviour['test_majority_accuracy']:.3f})"))
    for kind, targets in (results["transfer"] or {}).items():
        if targets:
            rows.append((f"transfer {kind}", "   ".join(f"{name} {m['macro_f1']:.3f}" for name, m in targets.items())))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
