"""Prompt formats of the domain suite, by name (a suite names one; it never contains a prompt).

Two tables:

* :data:`GENERATE` — what the model under test is asked for judged tasks: a user message built
  from the row's roles (``question``, ``context``, ``document``), sent through the model's chat
  template for instruct models, or as plain text ending in a cue for base models.
* :data:`CHOICE` — objective multiple-choice sets as lm-eval task fields (``doc_to_text``,
  ``doc_to_choice``, ``doc_to_target`` as lm-eval Jinja templates); lm-eval scores them by
  log-likelihood, exactly as it scores its own tasks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GenerateFormat:
    roles: tuple[str, ...]
    """Row roles the format reads (mapped to dataset fields by the task's ``fields``)."""
    user: str
    """The user message; ``{question}``, ``{context}``, ``{document}`` are filled in."""
    cue: str
    """Appended to the user text when no chat template is used."""


GENERATE: dict[str, GenerateFormat] = {
    "question": GenerateFormat(("question",), "{question}", "\nAnswer:"),
    "contract_question": GenerateFormat(
        ("question", "context"),
        "Read this excerpt of a contract, then answer the question.\n\nContract:\n{context}\n\nQuestion: {question}",
        "\nAnswer:"),
    "summarize": GenerateFormat(
        ("document",),
        "Summarize the following legal case in one short paragraph.\n\n{document}",
        "\nSummary:"),
}


def render_generate(name: str, values: dict[str, str], chat: bool) -> str:
    """The user text for one row (without chat formatting)."""
    fmt = GENERATE[name]
    text = fmt.user.format(**{r: values.get(r, "") for r in fmt.roles})
    return text if chat else text + fmt.cue


# lm-eval task fields per objective set; the rows keep the mirror's own field names
CHOICE: dict[str, dict[str, Any]] = {
    # MedQA (USMLE), 5 options given as "A. ...\nB. ..."; answer "C. <text>"
    "medqa": {
        "doc_to_text": "Question: {{question}}\n{{options}}\nAnswer:",
        "doc_to_choice": ["A", "B", "C", "D", "E"],
        "doc_to_target": "{{answer[0]}}",
    },
    # PubMedQA labeled (PQA-L) as shipped by llm-foundry: the context already ends in
    # "Question: ...\nA. yes\nB. no\nC. maybe\nAnswer: "
    "pubmedqa_labeled": {
        "doc_to_text": "{{context.rstrip()}}",
        "doc_to_choice": ["yes", "no", "maybe"],
        "doc_to_target": "{{continuation}}",
    },
    # Consumer Contracts QA (LegalBench): a contract excerpt and a yes/no question, answer True/False
    "consumer_contracts": {
        "doc_to_text": "Contract:\n{{contract}}\n\nQuestion: {{question}}\nAnswer (True or False):",
        "doc_to_choice": ["True", "False"],
        "doc_to_target": "{{answer}}",
    },
    # Legal Support (LegalBench): which of two case parentheticals better supports the claim
    "legal_support": {
        "doc_to_text": lambda doc: (  # a function: Jinja cannot name the field "legal-claim"
            f"Claim: {doc['legal-claim']}\n\nWhich case summary provides more support for the claim?\n"
            f"a. {doc['legal_conclusion_a']}\nb. {doc['legal_conclusion_b']}\nAnswer:"),
        "doc_to_choice": ["a", "b"],
        "doc_to_target": "{{correct_choice}}",
    },
}

CHOICE_FIELDS: dict[str, tuple[str, ...]] = {
    "medqa": ("question", "options", "answer"),
    "pubmedqa_labeled": ("context", "continuation"),
    "consumer_contracts": ("contract", "question", "answer"),
    "legal_support": ("legal-claim", "legal_conclusion_a", "legal_conclusion_b", "correct_choice"),
}
"""Fields each objective format reads: checked on every row (one-line error naming the row)."""
