"""The instruction-row contract shared by every job: answer types and the one row -> chat conversion.

The columns of `synthesis.instructions` are declared once, in dbt_project/models/sources/_synthesis__sources.yml
(`ehrforge.tables.columns("synthesis.instructions")`).

    from ehrforge.instructions import ANSWER_TYPES, to_messages
    msgs = to_messages(row)                       # system / user (/ assistant) messages, as training sees them
    prompt = to_messages(row, with_answer=False)  # the same prompt for generation (synthesis export, evaluation)

Synthesis writes rows in this shape, training tokenizes `to_messages(row)`, evaluation prompts with
`to_messages(row, with_answer=False)`, so a model is always evaluated on exactly the prompt form it was
trained on. `CHAT_TEMPLATES` are the templates for models that ship none (the tiny model uses chatml).
"""

from __future__ import annotations

from typing import Any, Mapping

from ehrforge.errors import InputDataError

ANSWER_TYPES = ("text", "yes_no", "set", "number")

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful clinical assistant. Answer the question using only the patient record given. "
    "Answer briefly and exactly."
)

# Named chat templates for models that have none. The assistant turn sits in {% generation %} so that
# `return_assistant_tokens_mask` marks exactly the answer tokens (and the end-of-turn token after them).
CHAT_TEMPLATES = {
    "chatml": (
        "{% for message in messages %}"
        "{% if message['role'] == 'assistant' %}"
        "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
        "{{ '\n' }}"
        "{% else %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
        "{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "llama3": (
        "{{ bos_token }}"
        "{% for message in messages %}"
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
        "{% if message['role'] == 'assistant' %}"
        "{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
        "{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
}


def to_messages(row: Mapping[str, Any], system_prompt: str | None = None, with_answer: bool = True) -> list[dict]:
    """One instruction row -> chat messages.

    system = the row's `system_prompt` if it carries one, else `system_prompt`, else the default;
    user = context + blank line + instruction (just the instruction when there is no context);
    assistant = answer (left out when `with_answer=False`, for generation).
    """
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
