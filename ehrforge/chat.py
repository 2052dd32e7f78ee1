"""Instruction row -> chat messages, shared by synthesis export, training and evaluation.

    to_messages({"context": "...", "instruction": "...", "answer": "..."})
    -> [{"role": "system", ...}, {"role": "user", "content": context + "\\n\\n" + instruction},
        {"role": "assistant", "content": answer}]

Same contract as `training.data.to_messages` on the `train` branch (system = the row's system_prompt, else the
given one, else DEFAULT_SYSTEM_PROMPT; user = context, blank line, instruction; assistant = answer); the lead
folds the two into one when both branches land.
"""

from __future__ import annotations

from typing import Any, Mapping

from ehrforge.errors import InputDataError

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful clinical assistant. Answer the question using only the patient record given. "
    "Answer briefly and exactly."
)


def to_messages(row: Mapping[str, Any], system_prompt: str | None = None, with_answer: bool = True) -> list[dict]:
    system = row.get("system_prompt") or system_prompt or DEFAULT_SYSTEM_PROMPT
    context = (row.get("context") or "").strip()
    instruction = (row.get("instruction") or "").strip()
    if not instruction:
        raise InputDataError(f"instruction row {row.get('instruction_id')!r} has an empty instruction")
    user = f"{context}\n\n{instruction}" if context else instruction
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    if with_answer:
        answer = row.get("answer")
        if answer is None or str(answer).strip() == "":
            raise InputDataError(f"instruction row {row.get('instruction_id')!r} has an empty answer")
        messages.append({"role": "assistant", "content": str(answer).strip()})
    return messages
