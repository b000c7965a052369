"""Model providers: the language models an agent may reason with.

The port and its value types are :mod:`threadline.core.model`; each provider is one
module here (:mod:`.openai_compatible`: OpenAI's chat-completions API, which OpenAI,
Azure OpenAI, vLLM, Ollama, llama.cpp's server and LiteLLM speak).
"""

from threadline.models.breaker import CircuitBreaker
from threadline.models.openai_compatible import OpenAICompatible
from threadline.models.redacting import RedactingProvider

__all__ = ["CircuitBreaker", "OpenAICompatible", "RedactingProvider"]
