"""RelayDance's rules: its catalogue (:mod:`worker.catalogue`) and the checks in
:mod:`worker.request`, which were written for it first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from worker.catalogue import MODELS, Model

if TYPE_CHECKING:
    from worker.providers import Problems
    from worker.request import RenderRequest

__all__ = ["RelayDanceRules"]


class RelayDanceRules:
    """Seeds 000-004: the model list, media limits, frames vs references, uploads."""

    name = "relaydance"
    models: Mapping[str, Model] = MODELS
    uploads = True
    flags = frozenset({"--generate-audio"})
    prompt_optional = False

    def check(self, request: RenderRequest, *, check_files: bool) -> Problems:
        """See :func:`worker.request.check_relaydance`."""
        from worker.request import check_relaydance  # request imports this package lazily

        return check_relaydance(request, check_files=check_files)

    def normalise(self, request: RenderRequest) -> RenderRequest:
        """Unchanged: RelayDance requests are already in the neutral shape."""
        return request

    def default_prices(self) -> Mapping[str, Any]:
        """None here: :mod:`worker.pricing` holds RelayDance's seed prices."""
        return {}
