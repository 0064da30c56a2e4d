"""StaticFallback: the ``text/plain`` and ``text/html`` a widget's bundle carries.

A notebook that cannot render widgets (terminal IPython, nbconvert, GitHub)
shows these instead of the live view; each widget says what they are.
"""

from __future__ import annotations

from typing import Any

__all__ = ["StaticFallback"]


class StaticFallback:
    """Mixin (before the ipywidgets base): add ``text()`` and ``html()`` to the mimebundle."""

    def text(self) -> str:
        raise NotImplementedError

    def html(self) -> str:
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle: dict[str, Any] | None = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        if bundle is None:
            return None
        bundle["text/plain"] = self.text()
        bundle["text/html"] = self.html()
        return bundle
