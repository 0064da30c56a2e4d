"""The widgets in a real browser: JupyterLab headless, Debian's chromium, a real job.

A notebook submits a short training job to the local queue behind a brief
blocker job (one slot, so the card shows the job queued first; a real agent
runs both with papermill; the job logs a loss curve with ``nblaunch.log`` for
~15 s) and shows its card, the queue table and a cost estimate. The test runs the
cells through ``window.jupyterapp`` and reads the DOM while the job runs:
the card reaches ``succeeded`` through its states, the chart's point count
grows while it runs, the queue table lists the job, the estimate shows
dollars, and no widget fails to display. Screenshots go to
``test-output/widgets/``; the saved notebook carries the widget state.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.conftest import make_notebook, stop_agent

CHROMIUM = "/usr/bin/chromium"
OUT = Path(__file__).resolve().parents[2] / "test-output" / "widgets"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

TRAIN = """\
import math, time
import nblaunch
nblaunch.log({"max_steps": steps})
for i in range(steps):
    nblaunch.log({"loss": 2.0 * math.exp(-i / 12) + 0.1}, step=i)
    if i % 8 == 7:
        nblaunch.log({"eval_loss": 2.2 * math.exp(-i / 12) + 0.15}, step=i)
    time.sleep(delay)
"""

CELLS = [
    "import nblaunch, nblaunch.widgets as nw\n"
    'blocker = nblaunch.submit("blocker.ipynb", name="blocker")  # holds the one slot a while\n'
    'job = nblaunch.submit("train_job.ipynb", name="browser-train")\n'
    "nw.display_job(job)",
    'nw.queue_status("local")',
    'nw.estimate_widget(params="124M", tokens="1B", gpu="A100-80GB", price_per_gpu_hour=2.0)',
]


@pytest.fixture
def lab(tmp_path: Path, nbl_home: Path) -> Iterator[dict[str, Any]]:
    """JupyterLab on a free port, isolated config/data/runtime dirs, serving ``tmp_path/work``."""
    work = tmp_path / "work"
    work.mkdir()
    dirs = {name: tmp_path / name for name in ("config", "data", "runtime", "ipython", "settings")}
    for d in dirs.values():
        d.mkdir()
    (dirs["config"] / "labconfig").mkdir()
    quiet = {  # nothing reaches for the network or covers the screenshots
        "@jupyterlab/apputils-extension:announcements": True,
        "@jupyterlab/extensionmanager-extension": True,
    }
    page_config = dirs["config"] / "labconfig" / "page_config.json"
    page_config.write_text(json.dumps({"disabledExtensions": quiet}))
    manager = dirs["settings"] / "@jupyter-widgets" / "jupyterlab-manager"
    manager.mkdir(parents=True)
    (manager / "plugin.jupyterlab-settings").write_text(json.dumps({"saveState": True}))
    token = secrets.token_hex(16)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
        "JUPYTERLAB_WORKSPACES_DIR": str(dirs["data"]),
        "NBLAUNCH_HOME": str(nbl_home),
        "NBLAUNCH_WIDGET_POLL_S": "0.3",
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    argv = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={work}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=",
        "--ServerApp.open_browser=False",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(argv, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "lab.log").read_text()
                assert time.monotonic() < deadline, "JupyterLab did not start in 60 s"
                time.sleep(0.2)
        yield {
            "url": url,
            "token": token,
            "work": work,
            "home": nbl_home,
            "log": tmp_path / "lab.log",
        }
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        stop_agent(nbl_home)


KERNEL_IDLE_JS = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session
    && panel.sessionContext.session.kernel;
  return Boolean(kernel) && kernel.status === 'idle';
}"""

RUN_JS = "async () => { await window.jupyterapp.commands.execute('%s'); }"

OBSERVE_STATES_JS = """() => {
  window.__nblStates = [];
  const note = () => {
    const header = document.querySelector('.nbl-job-card .nbl-job-header');
    const states = window.__nblStates;
    if (!header) return;
    const seen = [header.dataset.state, header.querySelector('.nbl-where').textContent];
    const last = states[states.length - 1];
    if (!last || last[0] !== seen[0] || last[1] !== seen[1]) states.push(seen);
  };
  const all = {subtree: true, childList: true, attributes: true};
  new MutationObserver(note).observe(document.body, all);
}"""

SAMPLE_JS = """() => {
  const card = document.querySelector('.nbl-job-card');
  const badge = card && card.querySelector('.nbl-job-header');
  const chart = card && card.querySelector('.nbl-chart');
  const queue = document.querySelector('.nbl-queue-status');
  const dollars = document.querySelector('.nbl-cost-estimate .nbl-dollars');
  const rows = queue ? Array.from(queue.querySelectorAll('.nbl-queue-row')) : [];
  return {
    state: badge ? badge.dataset.state : null,
    where: badge ? badge.querySelector('.nbl-where').textContent : null,
    job: badge ? badge.dataset.job : null,
    logged: chart && chart.dataset.logged ? Number(chart.dataset.logged) : 0,
    drawn: chart && chart.dataset.points ? Number(chart.dataset.points) : 0,
    lines: chart ? chart.querySelectorAll('polyline').length : 0,
    queueIds: rows.map((r) => r.dataset.job),
    queueStates: rows.map((r) => r.dataset.state),
    dollars: dollars ? dollars.textContent : null,
    widgetErrors: (document.body.innerText.match(/Error displaying widget/g) || []).length,
  };
}"""


def test_widgets_live_in_jupyterlab(lab: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    work: Path = lab["work"]
    (lab["home"] / "queues.toml").write_text("[queues.local]\nmax_concurrent = 1\n")
    make_notebook(work / "blocker.ipynb", "pass")
    make_notebook(work / "train_job.ipynb", TRAIN, params="steps = 30\ndelay = 0.35")
    make_notebook(work / "widgets.ipynb", *CELLS)
    OUT.mkdir(parents=True, exist_ok=True)
    samples: list[dict[str, Any]] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        try:
            page.goto(f"{lab['url']}/lab/tree/widgets.ipynb?token={lab['token']}", timeout=60_000)
            page.wait_for_function(KERNEL_IDLE_JS, timeout=60_000)
            page.evaluate(OBSERVE_STATES_JS)
            page.evaluate(RUN_JS % "notebook:run-all-cells")
            deadline = time.monotonic() + 120
            shot_mid = False
            while time.monotonic() < deadline:
                sample = page.evaluate(SAMPLE_JS)
                sample["t"] = time.monotonic()
                samples.append(sample)
                if sample["state"] == "running" and sample["logged"] >= 12 and not shot_mid:
                    page.screenshot(path=str(OUT / "running.png"), full_page=True)
                    shot_mid = True
                done = sample["queueStates"] and set(sample["queueStates"]) == {"succeeded"}
                if sample["state"] == "succeeded" and done:
                    break
                time.sleep(0.15)
            page.wait_for_timeout(500)
            final = page.evaluate(SAMPLE_JS)
            final["states"] = page.evaluate("() => window.__nblStates")
            page.screenshot(path=str(OUT / "succeeded.png"), full_page=True)
            page.evaluate(RUN_JS % "docmanager:save")
        finally:
            (OUT / "samples.json").write_text(json.dumps(samples, indent=1))
            browser.close()

    report = f"samples in {OUT / 'samples.json'}; server log {lab['log']}"
    shown = final["states"]  # every (state, place) the card's header showed, in order
    seen = [s for i, (s, _) in enumerate(shown) if i == 0 or s != shown[i - 1][0]]
    order = ["queued", "starting", "running", "succeeded"]
    assert seen == sorted(seen, key=order.index), f"states out of order: {shown}; {report}"
    assert {"queued", "running"} <= set(seen) and seen[-1] == "succeeded", f"{shown}; {report}"
    assert ["queued", "#1 in queue local"] in shown and ["running", "attempt 1"] in shown

    running_counts = [s["logged"] for s in samples if s["state"] == "running"]
    growth = sorted(set(running_counts))
    assert len(growth) >= 3 and running_counts[-1] > running_counts[0], (
        f"the chart should grow while the job runs: {running_counts}; {report}"
    )
    assert final["logged"] == 30 + 3 and final["lines"] == 2  # loss and eval_loss curves

    job_id = final["job"]
    assert job_id and job_id in final["queueIds"], f"queue table lacks {job_id}: {final}"
    assert len(final["queueIds"]) == 2 and final["queueStates"] == ["succeeded", "succeeded"]
    assert (
        final["dollars"]
        and final["dollars"].startswith("$")
        and any(c.isdigit() for c in final["dollars"])
    )
    assert max(s["widgetErrors"] for s in samples + [final]) == 0, "a widget failed to display"

    # the saved notebook carries the widget state (anywidget's module included) for static renders
    saved = nbformat.read(work / "widgets.ipynb", as_version=4)
    state = saved.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    charts = [m for m in state.values() if "_esm" in m.get("state", {})]
    assert charts and any(m["state"].get("series") for m in charts)
