"""CostEstimate: the estimator's inputs as controls, its answer updating as they change.

``%launch_estimate`` and ``nblaunch.estimate_widget(...)`` show it. Inputs are
model size and tokens (``124M``, ``7B``, ``1e9``), GPU type and count, nodes,
strategy (with ZeRO stage and offload), queue, prices, and spot or
on-demand; outputs are hours, dollars, the memory verdict and the
suggestion. Everything is computed by ``nblaunch.jobs.estimate.estimate``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, TypeVar

import ipywidgets as w

from nblaunch.options import STRATEGIES
from nblaunch.widgets import render_estimate
from nblaunch.widgets.fallback import StaticFallback

__all__ = ["CostEstimate"]

_DEFAULT = "(queue default)"
_W = TypeVar("_W", bound=w.DOMWidget)


def _estimate_defaults() -> dict[str, Any]:
    """Every ``estimate()`` argument that has a default, with it."""
    from nblaunch.jobs.estimate import estimate

    parameters = inspect.signature(estimate).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _gpu_names() -> list[str]:
    from nblaunch.jobs.gpus import CATALOG

    return [*CATALOG, "CPU"]


def _queue_names(root: Any) -> list[str]:
    from nblaunch.api import Queue
    from nblaunch.errors import NBLaunchError

    try:
        return [q.name for q in Queue.all(root)]
    except NBLaunchError:
        return []


class CostEstimate(StaticFallback, w.VBox):
    """Estimate a training run interactively.

    Parameters
    ----------
    params, tokens
        Model size and training tokens: a count or a string like ``7B``
        (``params`` may also be an HF config or model, kept as given).
    **options
        Keyword arguments of ``nblaunch.jobs.estimate.estimate``, with its
        defaults. ``gpu``, ``gpus``, ``nodes``, ``strategy``, ``zero``,
        ``offload``, ``queue``, ``spot``, ``price_per_gpu_hour`` and
        ``spot_price_per_gpu_hour`` each become a control (a price of 0 or
        None: the queue's); the rest (``batch_size``, ``seq_len``,
        ``epochs``, ``root`` …) are passed unchanged.
    """

    def __init__(self, params: Any = "1B", tokens: Any = "10B", **options: Any) -> None:
        values = {**_estimate_defaults(), **options}  # each control takes its own out
        self.estimate: dict[str, Any] | None = None
        self.error: str | None = None
        self._params_object = None if isinstance(params, (str, int, float)) else params
        style = {"description_width": "110px"}

        def control(kind: type[_W], **kwargs: Any) -> _W:
            # one Layout each: zero's is hidden on its own
            return kind(style=style, layout=w.Layout(width="300px"), **kwargs)

        def price(value: float | None, description: str) -> w.BoundedFloatText:
            return control(
                w.BoundedFloatText,
                value=value or 0.0,
                min=0.0,
                max=1e6,
                step=0.1,
                description=description,
            )

        self.params = control(
            w.Text,
            value=str(params) if self._params_object is None else type(params).__name__,
            description="model params",
            disabled=self._params_object is not None,
            continuous_update=False,
        )
        self.tokens = control(
            w.Text, value=str(tokens), description="tokens", continuous_update=False
        )
        gpu = values.pop("gpu")
        gpu_options = [_DEFAULT, *_gpu_names()]
        if gpu is not None and gpu not in gpu_options:
            gpu_options.append(gpu)
        self.gpu = control(
            w.Dropdown, options=gpu_options, value=gpu or _DEFAULT, description="GPU"
        )
        self.gpus = control(
            w.BoundedIntText,
            value=values.pop("gpus"),
            min=0,
            max=100_000,
            description="GPUs per node",
        )
        self.nodes = control(
            w.BoundedIntText, value=values.pop("nodes"), min=1, max=100_000, description="nodes"
        )
        self.strategy = control(
            w.Dropdown,
            options=list(STRATEGIES),
            value=values.pop("strategy"),
            description="strategy",
        )
        zero = values.pop("zero")
        self.zero = control(
            w.Dropdown,
            options=[("auto", -1), ("0", 0), ("1", 1), ("2", 2), ("3", 3)],
            value=-1 if zero is None else zero,
            description="ZeRO stage",
        )
        self.offload = w.Checkbox(
            value=values.pop("offload"), description="offload optimizer to CPU"
        )
        queue = values.pop("queue")
        queues = _queue_names(values.get("root"))
        if queue is not None and queue not in queues:
            queues.append(queue)
        self.queue = control(
            w.Dropdown,
            options=[("(none)", ""), *[(q, q) for q in queues]],
            value=queue or "",
            description="queue",
        )
        self.price = price(values.pop("price_per_gpu_hour"), "$ / GPU-hour")
        self.spot_price = price(values.pop("spot_price_per_gpu_hour"), "spot $ / GPU-h")
        self.spot = w.ToggleButtons(
            options=["on-demand", "spot"],
            value="spot" if values.pop("spot") else "on-demand",
            style={"button_width": "100px"},
        )
        #: the caller's other ``estimate`` arguments, passed unchanged
        self.fixed = {k: v for k, v in values.items() if k in options}
        self.result = w.HTML(layout=w.Layout(min_width="320px", padding="0 0 0 16px"))
        inputs = w.VBox(
            layout=w.Layout(flex="0 0 auto", width="320px"),
            children=[
                self.params,
                self.tokens,
                self.gpu,
                self.gpus,
                self.nodes,
                self.strategy,
                self.zero,
                self.offload,
                self.queue,
                self.price,
                self.spot_price,
                self.spot,
            ],
        )
        for widget in inputs.children:
            widget.observe(self._changed, names="value")
        super().__init__([w.HBox([inputs, self.result])])
        self.add_class("nbl-cost-estimate")
        self.update()

    def __repr__(self) -> str:
        return "CostEstimate()"

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], namespace: Mapping[str, Any] | None = None
    ) -> CostEstimate:
        """Build from ``parse_estimate_args`` values (what ``%launch_estimate`` parses).

        ``namespace`` resolves ``--params model`` / ``--tokens ds`` to the
        user's objects, as ``estimate_from_options`` does.
        """
        from nblaunch.jobs.estimate_args import estimate_kwargs

        given = estimate_kwargs(options, namespace)
        return cls(**{k: v for k, v in given.items() if v is not None})

    def kwargs(self) -> dict[str, Any]:
        """The ``estimate(...)`` arguments the controls hold now."""
        kw: dict[str, Any] = dict(self.fixed)
        kw.update(
            params=self._params_object
            if self._params_object is not None
            else self.params.value.strip(),
            tokens=self.tokens.value.strip(),
            gpu=None if self.gpu.value == _DEFAULT else self.gpu.value,
            gpus=self.gpus.value,
            nodes=self.nodes.value,
            strategy=self.strategy.value,
            zero=None if self.zero.value == -1 else self.zero.value,
            offload=self.offload.value,
            queue=self.queue.value or None,
            spot=self.spot.value == "spot",
        )
        if self.price.value:
            kw["price_per_gpu_hour"] = self.price.value
        if self.spot_price.value:
            kw["spot_price_per_gpu_hour"] = self.spot_price.value
        return kw

    def _changed(self, _change: dict[str, Any]) -> None:
        self.zero.layout.display = None if self.strategy.value == "deepspeed" else "none"
        self.update()

    def update(self) -> None:
        """Recompute the estimate from the controls and show it (or the error)."""
        from nblaunch.errors import NBLaunchError
        from nblaunch.jobs.estimate import estimate

        self.zero.layout.display = None if self.strategy.value == "deepspeed" else "none"
        kw = self.kwargs()
        try:
            est = estimate(**kw).to_dict()
        except NBLaunchError as exc:
            self.estimate, self.error = None, str(exc)
            self.result.value = render_estimate.estimate_error_html(self.error)
            return
        self.estimate, self.error = est, None
        self.result.value = render_estimate.estimate_html(
            est, spot=kw["spot"], gpus=est.get("gpus"), gpu=est.get("gpu")
        )

    def text(self) -> str:
        if self.estimate is None:
            return f"estimate: {self.error}"
        return render_estimate.estimate_text(self.estimate, spot=self.spot.value == "spot")

    def html(self) -> str:
        return str(self.result.value)
