"""Where attention probes looked: the test documents each scores highest per class, as highlighted text.

Each attention job's `results.json` keeps, per class, the test documents its probe gives the highest
probability of that class, with every token's weight (`job.attended`). The report shows them in
`report.md`, the most weighted tokens marked (`<mark>`, with their weight), in a window around the
strongest one.
"""

from __future__ import annotations

import html

import numpy as np

from mosaic.record import Results

# Tokens marked per document, tokens shown around the strongest, and attention jobs shown per report.
MARKED = 5
WINDOW = 60
JOBS_SHOWN = 12


def highlighted(tokens: list[str], weights: list[float], marked: int = MARKED, window: int = WINDOW) -> str:
    """The document's tokens around its most weighted one, the `marked` strongest as `<mark>token</mark><sub>w</sub>`.

    Tokens that carry their own spacing (` the`) are joined as they are; word pieces without it (BERT's `##ing`)
    are joined with spaces, continuations attached.
    """
    weights_array = np.asarray(weights)
    strongest = set(np.argsort(-weights_array, kind="stable")[:marked].tolist())
    peak = int(weights_array.argmax())
    first = max(0, min(peak - window // 2, len(tokens) - window))
    last = min(len(tokens), first + window)
    spaced = any(token[:1].isspace() for token in tokens)
    parts = []
    for i in range(first, last):
        token = tokens[i]
        joiner = "" if spaced or i == first else " "
        if not spaced and token.startswith("##"):
            joiner, token = "", token[2:]
        text = html.escape(token)
        if i in strongest:
            text = f"<mark>{text}</mark><sub>{weights_array[i]:.2f}</sub>"
        parts.append(joiner + text)
    return ("… " if first > 0 else "") + "".join(parts).strip() + (" …" if last < len(tokens) else "")


def attended_section(results: list[Results]) -> str:
    """The report's section on attention jobs ('' when the sweep has none): per job, per class, its documents."""
    jobs = [result for result in results if result.attended]
    if not jobs:
        return ""
    jobs.sort(key=lambda r: (r.config["dataset"]["name"], r.features.type, r.config_hash))
    lines = ["# Where the attention probes looked", "",
             "For each attention job, the test documents its probe gives the highest probability of each class "
             f"(label in brackets), around the most weighted token; the {MARKED} most weighted tokens are marked, with "
             "their weight (mean over heads; a document's weights sum to 1).", ""]
    for result in jobs[:JOBS_SHOWN]:
        config = result.config
        lines += [f"## {config['dataset']['name']}, {result.features.type} (layer {result.features.layer})", ""]
        for document in result.attended:
            lines.append(f"- **{document.for_class}** {document.probability:.2f} (label {document.label}): "
                         + highlighted(document.tokens, document.weights))
        lines.append("")
    if len(jobs) > JOBS_SHOWN:
        lines += [f"{len(jobs) - JOBS_SHOWN} more attention jobs: their documents are in each job's results.json "
                  "(`attended`).", ""]
    return "\n".join(lines)
