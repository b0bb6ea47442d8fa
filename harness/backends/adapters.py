"""Adapters that let other libraries drive any :class:`Backend`.

* :class:`ShaktiLM` is an lm-eval ``LM``: lm-eval builds the prompts, runs the metrics and
  aggregates; our backend answers the requests.  It is registered with lm-eval as ``shakti``
  (a registry model: ``--model_args model=smollm2-135m-q4``), ``shakti-llama-cpp`` and
  ``shakti-transformers`` (a weights path: ``--model_args path=/x.gguf``), so
  ``python -m harness.lm_eval_cli --model shakti ...`` is lm-eval's own CLI with our backends.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lm_eval.models  # noqa: F401  (lm-eval 0.4.13: import before register_model or built-ins vanish)
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from harness.backends.base import Backend, ChatMessage, GenerateRequest, LoglikelihoodRequest
from harness.lm_eval_speed import install as _memoize_lm_eval_templates

_memoize_lm_eval_templates()


def _gen_request(context: str, gen_kwargs: dict[str, Any]) -> GenerateRequest:
    until = gen_kwargs.get("until") or ()
    if isinstance(until, str):
        until = (until,)
    temperature = float(gen_kwargs.get("temperature", 0.0) or 0.0)
    if not gen_kwargs.get("do_sample", False):
        temperature = 0.0
    return GenerateRequest(prompt=context, until=tuple(until),
                           max_tokens=int(gen_kwargs.get("max_gen_toks", 256)),
                           temperature=temperature)


class ShaktiLM(LM):
    """lm-eval's view of one of our backends."""

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        reqs = [LoglikelihoodRequest(*r.args) for r in requests]
        return [(res.logprob, res.is_greedy) for res in self.backend.loglikelihood(reqs)]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        return self.backend.loglikelihood_rolling([r.args[0] for r in requests])

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        return self.backend.generate_until([_gen_request(*r.args) for r in requests])

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        msgs = [ChatMessage(m["role"], m["content"]) for m in chat_history]
        return self.backend.apply_chat_template(msgs, add_generation_prompt)

    @property
    def tokenizer_name(self) -> str:
        return f"shakti-{self.backend.info.backend}-{self.backend.info.sha256[:12]}"

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.tokenizer_name if chat_template else ""


def _backend_from_path(kind: str, path: str, **kw: Any) -> Backend:
    from harness.backends import backend_class

    p = Path(path)
    if kind == "transformers" and p.suffix == ".gguf":
        kw.setdefault("format", "gguf")
    backend: Backend = backend_class(kind)(p.stem, p, **kw)
    return backend


@register_model("shakti")
class ShaktiRegistryLM(ShaktiLM):
    """``--model shakti --model_args model=<registry name>[,weights=PATH]``."""

    def __init__(self, model: str = "smollm2-135m-q4", weights: str | None = None, **_: Any) -> None:
        from harness.backends import load_backend
        from harness.registry import Registry

        super().__init__(load_backend(Registry().resolve(model, weights)))


@register_model("shakti-llama-cpp")
class ShaktiLlamaCppLM(ShaktiLM):
    """``--model shakti-llama-cpp --model_args path=/x.gguf[,n_ctx=2048]``."""

    def __init__(self, path: str, n_ctx: int = 2048, **_: Any) -> None:
        super().__init__(_backend_from_path("llama_cpp", path, n_ctx=int(n_ctx)))


@register_model("shakti-transformers")
class ShaktiTransformersLM(ShaktiLM):
    """``--model shakti-transformers --model_args path=/folder_or.gguf[,dtype=float32]``."""

    def __init__(self, path: str, dtype: str = "float32", device: str = "cpu", **_: Any) -> None:
        super().__init__(_backend_from_path("transformers", path, dtype=dtype, device=device))
