"""LLM judges for open-ended answers. A judge = a rubric (prompt template + criteria dict) + a strict JSON parser
+ a runner that asks every judge of the jury in both answer orders through `ehrforge.llm.run_batch` (so the cache,
budget and PHI guard apply to judge calls exactly as to generation).

    from evaluation.judges import get_rubric, parse_judgement, judge_items
"""

from evaluation.judges.parser import JudgeParseError, parse_judgement
from evaluation.judges.rubric import RUBRICS, Rubric, get_rubric
from evaluation.judges.runner import JudgeItem, judge_items

__all__ = ["JudgeItem", "JudgeParseError", "RUBRICS", "Rubric", "get_rubric", "judge_items", "parse_judgement"]
