"""The live chart's model: trait values after updates, compact wire form, resume."""

from __future__ import annotations

import math
from array import array

import ipywidgets.embed

from nblaunch.widgets.chart import LiveChart


def decode(chart: LiveChart) -> dict[str, tuple[list[float], list[float]]]:
    values = array("f")
    values.frombytes(chart.data)
    out, off = {}, 0
    for s in chart.series:
        n = s["n"]
        out[s["key"]] = (list(values[off : off + n]), list(values[off + n : off + 2 * n]))
        off += 2 * n
    assert off == len(values)
    return out


def test_appends_reach_the_traits_only_on_flush() -> None:
    chart = LiveChart()
    chart.show(["loss"])
    chart.extend("loss", [0, 1, 2], [3.0, 2.0, 1.5])
    assert chart.series == [] and chart.data == b""
    assert chart.flush() is True
    assert chart.series == [
        {
            "key": "loss",
            "label": "loss",
            "color": "#1f77b4",
            "dash": False,
            "n": 3,
            "count": 3,
            "last": 1.5,
        }
    ]
    assert decode(chart) == {"loss": ([0.0, 1.0, 2.0], [3.0, 2.0, 1.5])}
    assert chart.flush() is False  # nothing new: nothing sent


def test_only_curves_on_show_are_sent() -> None:
    chart = LiveChart()
    chart.show(["loss", "eval_loss"])
    chart.add_curve("eval_loss", color="#ff7f0e", dash=True)
    for i in range(10):
        chart.append("loss", i, 1.0 / (i + 1))
        chart.append("gpu/utilization", i, 90.0)
        if i % 5 == 4:
            chart.append("eval_loss", i, 0.5)
    chart.flush()
    assert [s["key"] for s in chart.series] == ["loss", "eval_loss"]
    assert chart.series[1]["dash"] and chart.points_shown() == 12
    chart.show(["gpu/utilization"])
    chart.flush()
    assert decode(chart) == {"gpu/utilization": ([float(i) for i in range(10)], [90.0] * 10)}
    assert set(chart.curve_keys) == {"loss", "eval_loss", "gpu/utilization"}


def test_long_history_is_downsampled_and_float32() -> None:
    chart = LiveChart(max_points=2000)
    chart.show(["loss"])
    chart.extend("loss", range(100_000), (1 / math.sqrt(i + 1) for i in range(100_000)))
    chart.flush()
    (meta,) = chart.series
    assert meta["count"] == 100_000 and 1000 <= meta["n"] <= 2000
    assert len(chart.data) == meta["n"] * 2 * 4
    xs, ys = decode(chart)["loss"]
    assert xs[0] == 0 and xs[-1] == 99_999 and ys[0] == 1.0
    assert chart.count("loss") == 100_000 and chart.last("loss") == 1 / math.sqrt(100_000)


def test_a_resumed_attempt_replaces_what_came_after_its_checkpoint() -> None:
    chart = LiveChart()
    chart.show(["loss"])
    for step in range(100):
        chart.append("loss", step, 10.0 - step / 10, attempt=1)
    for step in range(50, 60):  # attempt 2 resumes from the step-50 checkpoint
        chart.append("loss", step, 1.0, attempt=2)
    xs, ys = chart.values("loss")
    assert list(xs) == [*range(50), *range(50, 60)] and list(ys[50:]) == [1.0] * 10
    chart.flush()
    assert decode(chart)["loss"][0][-1] == 59


def test_non_finite_values_are_not_drawn() -> None:
    chart = LiveChart()
    chart.show(["loss"])
    chart.extend("loss", [0, 1, 2], [1.0, float("nan"), float("inf")])
    chart.flush()
    assert chart.series[0]["count"] == 1


def test_state_embeds_with_its_javascript_for_static_rendering() -> None:
    chart = LiveChart(title="loss")
    chart.show(["loss"])
    chart.extend("loss", [0, 1], [2.0, 1.0])
    chart.flush()
    data = ipywidgets.embed.embed_data(views=[chart], drop_defaults=False)
    state = data["manager_state"]["state"][chart.model_id]["state"]
    assert "export default" in state["_esm"] and state["title"] == "loss"
    assert state["series"][0]["n"] == 2
    chart.close()
