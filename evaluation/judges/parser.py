"""Strict parser for judge output: one JSON object with per-criterion integer scores for A and B and a preference.

Tolerated: a ```json fence and text around the object (many models add them). Not tolerated, so the caller
re-asks: no object, invalid JSON, a missing or extra criterion, a score that is not an integer 1-5, a missing
or unknown preference.
"""

from __future__ import annotations

import json
import re

from ehrforge.errors import EhrforgeError


class JudgeParseError(EhrforgeError):
    pass


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)


def _first_object(text: str) -> str:
    """The first balanced {...} in text (braces inside JSON strings are skipped)."""
    start = text.find("{")
    if start < 0:
        raise JudgeParseError("no JSON object in the output")
    depth, in_str, esc = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start: i + 1]
    raise JudgeParseError("unterminated JSON object (output cut off? raise judge.max_new_tokens)")


def _score(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise JudgeParseError(f"{where} must be an integer 1-5, got {value!r}")
    if float(value) != int(value) or not 1 <= int(value) <= 5:
        raise JudgeParseError(f"{where} must be an integer 1-5, got {value!r}")
    return int(value)


def parse_judgement(text: str | None, criteria: list[str] | tuple[str, ...]) -> dict:
    """-> {"A": {criterion: int}, "B": {criterion: int}, "preferred": "A" | "B" | "tie"}; raises JudgeParseError."""
    if not text or not text.strip():
        raise JudgeParseError("empty output")
    fenced = _FENCE.search(text)
    body = _first_object(fenced.group(1) if fenced else text)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise JudgeParseError(f"invalid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(data, dict):
        raise JudgeParseError("the JSON value is not an object")
    out: dict = {}
    for side in ("A", "B"):
        scores = data.get(side)
        if not isinstance(scores, dict):
            raise JudgeParseError(f'missing object "{side}" with the criterion scores')
        missing = [c for c in criteria if c not in scores]
        extra = [k for k in scores if k not in criteria]
        if missing or extra:
            raise JudgeParseError(f'"{side}": missing criteria {missing}, unknown keys {extra}; expected {list(criteria)}')
        out[side] = {c: _score(scores[c], f"{side}.{c}") for c in criteria}
    pref = data.get("preferred")
    if not isinstance(pref, str) or pref.strip().upper() not in ("A", "B", "TIE"):
        raise JudgeParseError(f'"preferred" must be "A", "B" or "tie", got {pref!r}')
    out["preferred"] = pref.strip().upper() if pref.strip().upper() != "TIE" else "tie"
    return out
