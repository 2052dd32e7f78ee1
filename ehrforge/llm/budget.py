"""Per-run caps on calls, tokens and estimated cost.

Before a call is sent, its worst case (estimated prompt tokens + max_new_tokens) is reserved against what the run
has spent (including earlier invocations with the same run_id, read from llm.calls) and what calls in flight have
reserved. If the worst case does not fit, nothing more is sent: the cap is never overshot, at the price of stopping
a little early when answers come out shorter than max_new_tokens. Cache hits cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ehrforge.llm.config import LLMConfig


@dataclass
class Reservation:
    tokens: int
    cost: float


class Budget:
    def __init__(self, config: LLMConfig, spent: dict):
        self.config = config
        self.calls = spent["calls"]
        self.tokens = spent["tokens"]
        self.cost = spent["cost_usd"]
        self.res_calls = 0
        self.res_tokens = 0
        self.res_cost = 0.0
        self.exhausted: str | None = None

    def cost_of(self, prompt_tokens: int, completion_tokens: int) -> float:
        p = self.config.prices
        return prompt_tokens / 1000 * p.prompt_per_1k + completion_tokens / 1000 * p.completion_per_1k

    def reserve(self, prompt_tokens: int, max_new_tokens: int) -> Reservation | None:
        c = self.config
        tokens = prompt_tokens + max_new_tokens
        cost = self.cost_of(prompt_tokens, max_new_tokens)
        if c.max_calls is not None and self.calls + self.res_calls + 1 > c.max_calls:
            self.exhausted = f"max_calls={c.max_calls} reached ({self.calls} made)"
        elif c.max_tokens is not None and self.tokens + self.res_tokens + tokens > c.max_tokens:
            self.exhausted = (f"max_tokens={c.max_tokens} would be exceeded ({self.tokens} used, the next call may use "
                              f"up to {tokens})")
        elif c.max_cost_usd is not None and self.cost + self.res_cost + cost > c.max_cost_usd:
            self.exhausted = (f"max_cost_usd={c.max_cost_usd} would be exceeded (${self.cost:.4f} spent, the next call "
                              f"may cost up to ${cost:.4f})")
        if self.exhausted:
            return None
        self.res_calls += 1
        self.res_tokens += tokens
        self.res_cost += cost
        return Reservation(tokens, cost)

    def settle(self, res: Reservation, prompt_tokens: int, completion_tokens: int) -> float:
        """Replace the reservation by what the call used; returns its cost."""
        self.res_calls -= 1
        self.res_tokens -= res.tokens
        self.res_cost -= res.cost
        cost = self.cost_of(prompt_tokens, completion_tokens)
        self.calls += 1
        self.tokens += prompt_tokens + completion_tokens
        self.cost += cost
        return cost

    def spent(self) -> dict:
        return {"calls": self.calls, "tokens": self.tokens, "cost_usd": round(self.cost, 6)}
