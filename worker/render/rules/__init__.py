"""Per-provider request rules: the models, options and media each provider takes.

:func:`worker.render.validation.validate_request` parses a request once, in the neutral shape of
:class:`~worker.render.request.RenderRequest`, then asks the rules of the provider behind the key
alias: ``relaydance`` (seeds 000-004) or ``kinovi`` (seed 003 and ``seeds/kinovi.md``).
The rules also normalise a valid request (Kinovi's keyframe images become first/last
frames), so a job record holds one unambiguous request whatever the provider.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from worker.render.catalogue import Model
from worker.render.request import Problems, RenderRequest
from worker.render.rules.kinovi import KinoviRules
from worker.render.rules.relaydance import RelayDanceRules

__all__ = [
    "Problems",
    "ProviderRules",
    "all_models",
    "find_model",
    "provider_names",
    "rules_for",
]


class ProviderRules(Protocol):
    """What one provider accepts, checked before anything is enqueued or paid for."""

    name: str
    models: Mapping[str, Model]
    # Whether local files are hosted through the provider (a ``prepare`` upload step).
    uploads: bool
    # Optional ``relaydance render`` flags only this provider takes.
    flags: frozenset[str]
    # Whether a request may leave the prompt out (the rules then say when it may not).
    prompt_optional: bool

    def check(self, request: RenderRequest, *, check_files: bool) -> Problems:
        """Every problem of a parsed request, each as (field, message with the fix)."""
        ...

    def normalise(self, request: RenderRequest) -> RenderRequest:
        """The canonical form of a request that passed :meth:`check`."""
        ...

    def default_prices(self) -> Mapping[str, Any]:
        """Price entries (``RELAYDANCE_PRICES`` shape) for this provider's models."""
        ...


def _relaydance() -> ProviderRules:
    # A model id RelayDance does not know may be another provider's: say so.
    return RelayDanceRules(find_elsewhere=find_model)


def _kinovi() -> ProviderRules:
    return KinoviRules()


_REGISTRY: dict[str, Callable[[], ProviderRules]] = {
    "relaydance": _relaydance,
    "kinovi": _kinovi,
}
_made: dict[str, ProviderRules] = {}


def provider_names() -> tuple[str, ...]:
    """Every provider with rules, sorted."""
    return tuple(sorted(_REGISTRY))


def rules_for(provider: str) -> ProviderRules:
    """The rules of a provider; raises ValueError naming the known ones."""
    if provider not in _made:
        try:
            factory = _REGISTRY[provider]
        except KeyError:
            raise ValueError(
                f"unknown provider {provider!r}; known: {', '.join(provider_names())}"
            ) from None
        _made[provider] = factory()
    return _made[provider]


def all_models() -> dict[str, Model]:
    """Every provider's models by id (ids are unique across providers)."""
    models: dict[str, Model] = {}
    for name in provider_names():
        models.update(rules_for(name).models)
    return models


def find_model(model_id: str) -> Model | None:
    """The catalogue entry of a model id, whichever provider offers it."""
    for name in provider_names():
        model = rules_for(name).models.get(model_id)
        if model is not None:
            return model
    return None
