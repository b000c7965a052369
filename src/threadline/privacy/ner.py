"""Names and addresses through Presidio's analyzer: the optional ``ner`` extra.

Presidio is imported only when an engine is built. Without an analyzer of
its own, the engine uses a spaCy model that must already be installed as a
package: nothing here downloads a model.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Final, Protocol

from threadline.privacy.detect import Finding

INSTALL_HINT: Final = "pip install 'threadline[ner]'"
#: Presidio's entity types and the kinds they become.
DEFAULT_ENTITIES: Final = {"PERSON": "name", "LOCATION": "address"}


class NerUnavailable(RuntimeError):
    """The NER engine cannot run here: Presidio or its spaCy model is not installed.

    Not retryable: install what the message names.
    """


class Analyzer(Protocol):
    """What the engine needs of Presidio's ``AnalyzerEngine``."""

    def analyze(self, text: str, language: str, entities: list[str]) -> list[Any]: ...


class NerEngine:
    """Finds names and addresses with Presidio; ``find`` returns ``name`` and ``address`` findings.

    Pass ``analyzer`` to use an ``AnalyzerEngine`` built elsewhere; otherwise one
    is built on the installed spaCy package ``model``.
    """

    def __init__(
        self,
        analyzer: Analyzer | None = None,
        *,
        language: str = "en",
        model: str = "en_core_web_lg",
        entities: Mapping[str, str] = DEFAULT_ENTITIES,
        threshold: float = 0.5,
    ) -> None:
        presidio = _import("presidio_analyzer")
        self.language = language
        self.entities = dict(entities)
        self.threshold = threshold
        self.analyzer: Analyzer = analyzer or _spacy_analyzer(presidio, language, model)

    def find(self, text: str) -> list[Finding]:
        """The names and addresses in ``text`` that Presidio scores at least ``threshold``."""
        results = self.analyzer.analyze(
            text=text, language=self.language, entities=list(self.entities)
        )
        found = [
            Finding(self.entities[r.entity_type], r.start, r.end, text[r.start : r.end])
            for r in results
            if r.entity_type in self.entities and r.score >= self.threshold
        ]
        return sorted(found, key=lambda f: f.start)


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise NerUnavailable(
            f"names and addresses need Presidio, which is not installed: {INSTALL_HINT}"
        ) from exc


def _spacy_analyzer(presidio: Any, language: str, model: str) -> Analyzer:
    spacy_util = _import("spacy.util")
    if not spacy_util.is_package(model):
        raise NerUnavailable(
            f"the spaCy model {model!r} is not installed; install it as a package "
            f"(it is never downloaded at run time), or pass an analyzer"
        )
    provider = importlib.import_module("presidio_analyzer.nlp_engine").NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": language, "model_name": model}],
        }
    )
    engine: Analyzer = presidio.AnalyzerEngine(
        nlp_engine=provider.create_engine(), supported_languages=[language]
    )
    return engine
