"""A small OpenAI-compatible chat server over a local transformers model, for the openai-backend tests.

    python tests/llm/openai_server.py --model runs/tiny-llama --host 127.0.0.1 --port 8011

Why not only `transformers serve` (which the suite also runs against): in transformers 5.23 it ignores `logprobs` /
`top_logprobs` (needed for choice scoring, as vLLM and OpenAI return them), and the tests need to inject faults
(429 with Retry-After, 500, slow replies) and to see exactly what the server received (the PHI guard test). So this
server generates real text with a real model and additionally:
  GET  /_received   every request it got (path, JSON body, monotonic time), including /v1/models probes
  POST /_faults     {"plan": [{"status": 429, "retry_after": 1}, {"status": 500}], "delay_s": 0.1, "reset": true}:
                    the next chat requests get the planned errors in order; every chat reply waits delay_s first;
                    reset clears the received log
"""

# no `from __future__ import annotations`: FastAPI must see the real Request type of the locally imported class

import argparse
import asyncio
import threading
import time
import uuid


def build_app(model_dir: str):
    import torch
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    lock = threading.Lock()
    state = {"received": [], "plan": [], "delay_s": 0.0}
    app = FastAPI()

    def generate(body: dict) -> dict:
        text = tok.apply_chat_template(body["messages"], add_generation_prompt=True, tokenize=False)
        ids = tok(text, return_tensors="pt", add_special_tokens=False)
        temperature = float(body.get("temperature") or 0.0)
        kw = {"max_new_tokens": int(body.get("max_tokens") or body.get("max_completion_tokens") or 16),
              "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id}
        if temperature > 0:
            kw.update(do_sample=True, temperature=temperature, top_p=float(body.get("top_p") or 1.0), top_k=0)
        else:
            kw.update(do_sample=False)
        with lock, torch.inference_mode():
            torch.manual_seed(int(body.get("seed") or 0))
            out = model.generate(**ids, **kw, return_dict_in_generate=True, output_logits=True)
        new = out.sequences[0, ids["input_ids"].shape[1]:].tolist()
        if tok.eos_token_id in new:
            new = new[: new.index(tok.eos_token_id) + 1]
            finish = "stop"
        else:
            finish = "length"
        content = None
        if body.get("logprobs"):
            k = int(body.get("top_logprobs") or 0)
            content = []
            for j, t in enumerate(new):
                lp = torch.log_softmax(out.logits[j][0].float(), dim=-1)
                top = torch.topk(lp, min(k, lp.shape[-1])) if k else None
                content.append({
                    "token": tok.decode([t]), "logprob": float(lp[t]), "bytes": None,
                    "top_logprobs": [] if top is None else [
                        {"token": tok.decode([int(i)]), "logprob": float(v), "bytes": None}
                        for v, i in zip(top.values.tolist(), top.indices.tolist())]})
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant",
                                     "content": tok.decode([t for t in new if t != tok.eos_token_id],
                                                           skip_special_tokens=True)},
                         "logprobs": {"content": content} if content is not None else None}],
            "usage": {"prompt_tokens": int(ids["input_ids"].shape[1]), "completion_tokens": len(new),
                      "total_tokens": int(ids["input_ids"].shape[1]) + len(new)},
        }

    @app.get("/v1/models")
    async def models(request: Request):
        state["received"].append({"path": "/v1/models", "body": None, "t": time.monotonic()})
        return {"object": "list", "data": [{"id": model_dir, "object": "model", "owned_by": "test"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        state["received"].append({"path": "/v1/chat/completions", "body": body, "t": time.monotonic()})
        if state["delay_s"]:
            await asyncio.sleep(state["delay_s"])
        if state["plan"]:
            fault = state["plan"].pop(0)
            headers = {"retry-after": str(fault["retry_after"])} if "retry_after" in fault else {}
            return JSONResponse({"error": {"message": f"injected {fault['status']}", "type": "test"}},
                                status_code=fault["status"], headers=headers)
        return await asyncio.to_thread(generate, body)

    @app.get("/_received")
    async def received():
        return state["received"]

    @app.post("/_faults")
    async def faults(request: Request):
        body = await request.json()
        state["plan"] = list(body.get("plan", []))
        state["delay_s"] = float(body.get("delay_s", 0.0))
        if body.get("reset"):
            state["received"].clear()
        return {"ok": True}

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build_app(args.model), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
