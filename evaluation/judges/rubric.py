"""Judge rubrics: a prompt template and a criteria dict. Changing a rubric changes judge scores: bump the spec
version (and the rubric's own `version`, which is stored with every judge score)."""

from __future__ import annotations

from dataclasses import dataclass

from ehrforge.errors import ConfigError


@dataclass(frozen=True)
class Rubric:
    name: str
    version: int
    system: str
    template: str
    criteria: dict[str, str]
    max_context_chars: int = 6000

    def criteria_block(self) -> str:
        return "\n".join(f"- {k}: {v}" for k, v in self.criteria.items())

    def json_shape(self) -> str:
        fields = ", ".join(f'"{k}": <1-5>' for k in self.criteria)
        return '{"A": {' + fields + '}, "B": {' + fields + '}, "preferred": "A" | "B" | "tie"}'

    def render(self, question: str, context: str, answer_a: str, answer_b: str) -> list[dict]:
        ctx = context or "(none)"
        if len(ctx) > self.max_context_chars:
            ctx = ctx[: self.max_context_chars] + " [...]"
        user = self.template.format(question=question, context=ctx, answer_a=answer_a or "(empty)",
                                    answer_b=answer_b or "(empty)", criteria=self.criteria_block(),
                                    shape=self.json_shape())
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    def render_choice(self, question: str, context: str, answer_a: str, answer_b: str) -> list[dict]:
        """The same grading prompt, ending in a one-word verdict (A, B or tie) that is scored, not generated:
        constrained output for judges too small to write the JSON object (SmolLM2-135M parses 0 of them)."""
        msgs = self.render(question, context, answer_a, answer_b)
        user = msgs[1]["content"]
        head = user.split("Score each response on every criterion")[0]
        user = (head + "Judge both responses on these criteria:\n" + self.criteria_block()
                + "\n\nWhich response is better overall? Reply with one word: A, B or tie.")
        return [{"role": "system", "content": self.system.replace("Reply with a single JSON object and nothing else.",
                                                                  "Reply with one word.")},
                {"role": "user", "content": user}]


CLINICAL_ANSWER = Rubric(
    name="clinical_answer",
    version=1,
    system=(
        "You are a senior clinician grading answers to questions about a patient's record. Grade each response on "
        "its own merits against the record; the order in which responses are shown carries no information. "
        "Reply with a single JSON object and nothing else."
    ),
    template=(
        "Patient record:\n{context}\n\nQuestion:\n{question}\n\n"
        "Response A:\n{answer_a}\n\nResponse B:\n{answer_b}\n\n"
        "Score each response on every criterion from 1 (poor) to 5 (excellent):\n{criteria}\n\n"
        "Then say which response is better overall, or tie.\n"
        "Reply with only this JSON object (integers 1-5, no comments, no text before or after):\n{shape}"
    ),
    criteria={
        "correctness": "the answer is medically correct for this patient and answers the question asked",
        "completeness": "every part of the question is answered; nothing important is missing",
        "faithfulness": "every claim is supported by the record; nothing is invented",
        "concision": "the answer is brief and clear, without irrelevant content",
    },
)

RUBRICS: dict[str, Rubric] = {CLINICAL_ANSWER.name: CLINICAL_ANSWER}


def get_rubric(name: str) -> Rubric:
    if name not in RUBRICS:
        raise ConfigError(f"unknown judge rubric {name!r}; known: {sorted(RUBRICS)}")
    return RUBRICS[name]
