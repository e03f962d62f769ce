"""The workbench in a real browser: JupyterLab (started by scripts/lab.sh, as `make lab` does)
serves notebooks/explore_population_health.ipynb over a small synthetic federation; headless
Debian Chromium (Playwright, tests/browser.py's settings) runs all its cells, reads the
explorer's released count and its chart, changes a control, and checks both change.

Every request the browser makes outside the JupyterLab server is blocked (and must not
happen: the interactive chart works offline). The screenshot is written to
``test-artifacts/lab-explorer.png`` (``FDP_TEST_ARTIFACTS`` overrides the folder); CI keeps
that folder as a build artifact.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.browser import ARGS, chromium, require_browser
from tests.conftest import OPERATOR

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "explore_population_health.ipynb"
ARTIFACTS = Path(os.environ.get("FDP_TEST_ARTIFACTS", ROOT / "test-artifacts"))
# Only the JupyterLab server resolves; every other host maps to nothing.
BROWSER_ARGS = [a for a in ARGS if not a.startswith("--host-resolver-rules")] + [
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"
]
COUNT = ".fdp-explorer-count .fdp-register"
MARKS = ".fdp-explorer-chart svg g.role-mark > path"
# The chart as drawn: every Vega data mark's accessible description (group and value).
CHART_JS = f"""() => [...document.querySelectorAll('{MARKS}')]
    .map(m => (m.getAttribute('aria-label') || '') + '|' + (m.getAttribute('d') || ''))"""

# A fresh browser profile: start the notebook's kernel without asking, no news prompt.
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false"},
}

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    pytest.fail(f"JupyterLab did not answer in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen, api: str) -> None:
    """Shut the kernels down through the API (they run in their own sessions), then end
    JupyterLab's process group: SIGTERM, and SIGKILL if it is still there after 10 s."""
    try:
        with urllib.request.urlopen(f"{api}/kernels?token={_TOKEN}", timeout=5) as answer:
            kernels = json.load(answer)
        for kernel in kernels:
            request = urllib.request.Request(
                f"{api}/kernels/{kernel['id']}?token={_TOKEN}", method="DELETE"
            )
            urllib.request.urlopen(request, timeout=10).close()
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        pass
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


_TOKEN = "fdp-browser-test-" + os.urandom(12).hex()


@pytest.fixture
def lab(federation, tmp_path):
    """JupyterLab on a free port, serving a folder with a copy of the explorer notebook, with
    the test federation and the demo operator's identity; stopped (with its kernels) after."""
    require_browser()  # skip (or, under CI, fail) before starting anything
    served = tmp_path / "lab"
    served.mkdir()
    config = tmp_path / "jupyter-config"
    for plugin, values in SETTINGS.items():
        path = config / "lab" / "user-settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    shutil.copy(NOTEBOOK, served / NOTEBOOK.name)
    port = _free_port()
    log = tmp_path / "jupyterlab.log"
    env = {
        **os.environ,
        "FDP_FEDERATION": str(federation),
        "JUPYTERHUB_USER": OPERATOR,
        "LAB_PORT": str(port),
        "LAB_ROOT": str(served),
        "LAB_TOKEN": _TOKEN,
        # settings, workspaces and runtime files of this server only
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", str(ROOT / "scripts" / "lab.sh")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, ended as a whole
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(f"{base}/api/status?token={_TOKEN}", proc, log)
        printed = log.read_text()
        assert f"{base}/lab?token={_TOKEN}" in printed, "lab.sh prints the URL with its token"
        yield base, log
    finally:
        _stop(proc, f"{base}/api")


def _connected(base: str) -> bool:
    """Whether a kernel is running and the page is connected to it."""
    with urllib.request.urlopen(f"{base}/api/kernels?token={_TOKEN}", timeout=5) as answer:
        return any(k["connections"] > 0 for k in json.load(answer))


def _marks(page) -> list[str]:
    return page.evaluate(CHART_JS)


def _wait_for(predicate, timeout: float, what: str, page, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(250)
    shot = ARTIFACTS / "lab-explorer-failed.png"
    page.screenshot(path=str(shot))
    pytest.fail(f"timed out waiting for {what}; screenshot {shot}\n{log.read_text()[-2000:]}")


def test_explorer_runs_in_jupyterlab_and_updates_when_a_control_changes(lab):
    base, log = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page_errors: list[str] = []
    started = time.monotonic()
    allowed = (base, "data:", "blob:", "about:")
    browser = chromium(allowed, args=BROWSER_ARGS, width=1280, height=1000, timeout_ms=30_000)
    with browser as (context, blocked):
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={_TOKEN}")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for()
        status = page.locator(".jp-StatusBar-Widget")
        _wait_for(  # the notebook's kernel started and connected
            lambda: _connected(base) and "| Idle" in " ".join(status.all_inner_texts()),
            30,
            "the kernel to start",
            page,
            log,
        )
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()

        count = page.locator(COUNT)
        first = _wait_for(
            lambda: count.count() and count.first.inner_text().strip(),
            45,
            "the explorer's count",
            page,
            log,
        )
        before = _wait_for(lambda: _marks(page), 20, "the chart's bars", page, log)
        assert re.fullmatch(r"[\d,]+", first), f"a released count, got {first!r}"
        assert int(first.replace(",", "")) % 5 == 0, "released counts are rounded to 5"

        register = page.locator(".widget-dropdown", has_text="Register").locator("select")
        register.select_option(value=_option_value(register, "Diabetes"))
        after = _wait_for(
            lambda: (t := count.first.inner_text().strip()) != first and t,
            30,
            "the count to change",
            page,
            log,
        )
        changed = _wait_for(
            lambda: (m := _marks(page)) != before and m,
            20,
            "the chart to change",
            page,
            log,
        )
        assert re.fullmatch(r"[\d,]+", after), f"a released count, got {after!r}"
        heading = page.locator(".fdp-explorer-count").first.inner_text()
        assert "Diabetes" in heading
        assert changed and changed != before
        error = page.locator(".fdp-explorer-error")
        assert error.count() == 0, error.first.inner_text()
        shot = ARTIFACTS / "lab-explorer.png"
        page.locator(".fdp-explorer").first.screenshot(path=str(shot))
    seconds = time.monotonic() - started
    print(f"explorer in JupyterLab: {first} -> {after}; screenshot {shot}; {seconds:.1f} s")
    assert not blocked, f"the page asked for the network: {blocked[:5]}"
    assert not page_errors, page_errors[:3]
    assert shot.stat().st_size > 10_000


def _option_value(select, text: str) -> str:
    """The value of the first <option> of ``select`` whose label contains ``text``."""
    for option in select.locator("option").all():
        if text in option.inner_text():
            return option.get_attribute("value") or option.inner_text()
    raise AssertionError(f"no option containing {text!r}")
