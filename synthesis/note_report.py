"""Fidelity and privacy checks for generated notes against real notes.

    fidelity_stats(generated, real)       length and vocabulary statistics side by side
    privacy_stats(generated, train, ids)  per generated note: the training notes ranked by ROUGE-5 recall (nearest
                                          first) and the share of its 8-grams found in any training note

Tokenization is rouge-score's default tokenizer (lower-cased alphanumeric tokens), so ROUGE-5 here equals
`rouge_scorer.RougeScorer(["rouge5"]).score(target=train_note, prediction=generated).recall` (checked in the tests),
computed with n-gram counters so that all generated x training pairs stay cheap.
"""

from __future__ import annotations

import statistics
from collections import Counter


def tokenize(text: str) -> list[str]:
    from rouge_score.tokenizers import DefaultTokenizer

    return DefaultTokenizer(use_stemmer=False).tokenize(text or "")


def ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def rouge_n_recall(target: Counter, prediction: Counter) -> float:
    total = sum(target.values())
    if not total:
        return 0.0
    overlap = sum(min(c, prediction[g]) for g, c in target.items() if g in prediction)
    return overlap / total


def _summary(lengths: list[int]) -> dict:
    if not lengths:
        return {"mean": 0.0, "median": 0.0, "p10": 0.0, "p90": 0.0}
    s = sorted(lengths)
    return {"mean": statistics.fmean(s), "median": float(statistics.median(s)),
            "p10": float(s[int(0.1 * (len(s) - 1))]), "p90": float(s[int(0.9 * (len(s) - 1))])}


def fidelity_stats(generated: list[str], real: list[str]) -> dict:
    gen_toks = [tokenize(t) for t in generated]
    real_toks = [tokenize(t) for t in real]
    gv = Counter(t for ts in gen_toks for t in ts)
    rv = Counter(t for ts in real_toks for t in ts)
    n_gen_tokens = sum(gv.values())
    out = {"n_generated": len(generated), "n_real": len(real)}
    for name, toks in (("generated", gen_toks), ("real", real_toks)):
        lens = [len(t) for t in toks]
        for k, v in _summary(lens).items():
            out[f"{name}_words_{k}"] = round(v, 2)
        vocab = {t for ts in toks for t in ts}
        out[f"{name}_vocab_size"] = len(vocab)
        n_tok = sum(lens)
        out[f"{name}_type_token_ratio"] = round(len(vocab) / n_tok, 4) if n_tok else 0.0
    out["vocab_jaccard"] = round(len(set(gv) & set(rv)) / len(set(gv) | set(rv)), 4) if (gv or rv) else 0.0
    out["generated_oov_token_rate"] = round(sum(c for t, c in gv.items() if t not in rv) / n_gen_tokens, 4) \
        if n_gen_tokens else 0.0
    return out


def privacy_stats(generated: list[str], train: list[str], train_ids: list[str], top_k: int = 3) -> list[dict]:
    """One dict per generated note: nearest training notes by ROUGE-5 recall, max recall, 8-gram overlap."""
    train_5 = [ngrams(tokenize(t), 5) for t in train]
    train_8: set = set()
    for t in train:
        train_8.update(ngrams(tokenize(t), 8))
    out = []
    for i, g in enumerate(generated):
        toks = tokenize(g)
        g5 = ngrams(toks, 5)
        scores = sorted(((rouge_n_recall(t5, g5), tid) for t5, tid in zip(train_5, train_ids)),
                        key=lambda x: (-x[0], x[1]))
        g8 = ngrams(toks, 8)
        n8 = sum(g8.values())
        shared = sum(c for gram, c in g8.items() if gram in train_8)
        out.append({"generated_index": i, "max_rouge5_recall": round(scores[0][0], 4) if scores else 0.0,
                    "nearest_train_ids": [tid for _, tid in scores[:top_k]],
                    "nearest_rouge5_recall": [round(s, 4) for s, _ in scores[:top_k]],
                    "n_8grams": n8, "shared_8grams": shared,
                    "frac_8grams_in_train": round(shared / n8, 4) if n8 else 0.0})
    return out
