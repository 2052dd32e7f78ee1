"""Normalisation shared by the metrics: the one answer verifier's functions (ehrforge.answers), so that evaluation
scores exactly as synthesis accepts reasoning chains and GRPO rewards completions."""

from __future__ import annotations

from ehrforge.answers import first_number, normalize, parse_set, tokens, yes_no

__all__ = ["first_number", "normalize", "parse_set", "tokens", "yes_no"]
