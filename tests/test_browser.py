"""The course in a real browser (`make test-browser`): JupyterLab from the project's environment
on 127.0.0.1, Debian's Chromium driven by Playwright. Every committed notebook opens untrusted,
as from a fresh clone, with no error dialog, no widget shown as its text form and without
being marked modified; 01 runs, and moving its temperature slider changes the sample below it.
Screenshots go to build/browser/. Skipped unless COURSE_BROWSER=1 (the Makefile sets it)."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from helpers import PROJECT_ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("COURSE_BROWSER") != "1", reason="a browser test: run `make test-browser`"),
]

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("[0-9]*.ipynb"))
SHOTS = PROJECT_ROOT / "build" / "browser"
TEXT_FORMS = ("interactive(children=", "VBox(children=", "HBox(children=")
CHROMIUM_FLAGS = [  # as root, without a screen, and without reaching for the closed network
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium():
    path = os.environ.get("CHROMIUM") or next(
        (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None
    )
    if not path:
        pytest.fail(
            "no Chromium found: `make test-browser` installs Debian's (apt-get install chromium), or set CHROMIUM"
        )
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving a copy of notebooks/ (so that nothing it saves touches the committed
    files), with fresh Jupyter folders: no notebook is trusted, no setting of the user's applies."""
    home = tmp_path_factory.mktemp("lab")
    root = home / "notebooks"
    shutil.copytree(PROJECT_ROOT / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    settings = home / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # every cell in the page, not only those scrolled into view, so that the whole notebook is checked
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    news = home / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))  # no network here
    port, token = free_port(), "course-browser-test"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    log = open(home / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                log.close()
                pytest.fail(f"JupyterLab did not start: {(home / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield {"url": url, "token": token, "root": root}
    server.terminate()
    server.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def open_notebook(browser, lab, name):
    """A fresh page with ``name`` open in JupyterLab and every cell drawn; returns the page and
    the list that collects the page's uncaught JavaScript errors."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(f"{lab['url']}/lab/tree/{name}?reset&token={lab['token']}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    page.wait_for_function("document.querySelectorAll('.jp-NotebookPanel .jp-Cell').length > 5", timeout=60_000)
    page.wait_for_timeout(3000)  # the kernel starts; widgets, math and images settle
    return page, errors


def notebook_state(page):
    """The open notebook's path, whether JupyterLab holds it modified, and whether its code cells are trusted."""
    return page.evaluate(
        """() => {
        const panel = window.jupyterapp.shell.currentWidget;
        const code = panel.content.widgets.filter(cell => cell.model.type === 'code');
        return {path: panel.context.path, dirty: panel.context.model.dirty, trusted: code.every(c => c.model.trusted)};
    }"""
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_each_notebook_opens_untrusted_without_errors_widget_text_or_changes(browser, lab, path):
    page, errors = open_notebook(browser, lab, path.name)
    try:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SHOTS / f"{path.stem}.png")
        assert page.locator(".jp-Dialog").count() == 0, page.locator(".jp-Dialog").first.inner_text()
        text = page.locator(".jp-NotebookPanel .jp-Notebook").inner_text()
        assert not [form for form in TEXT_FORMS if form in text]
        cells = page.locator(".jp-NotebookPanel .jp-Cell").count()
        assert cells == len(json.loads(path.read_text())["cells"])
        state = notebook_state(page)
        assert state["path"] == path.name and state["trusted"] is False  # as from a fresh clone
        notes = page.get_by_text("appear when this cell runs")  # helpers.headless.picture_widgets
        if notes.count():
            notes.first.scroll_into_view_if_needed()
            page.screenshot(path=SHOTS / f"{path.stem}_widget.png")
        page.wait_for_timeout(2000)  # time for anything that would rewrite the notebook on opening
        assert notebook_state(page)["dirty"] is False, "opening marked the notebook modified"
        assert not errors
    finally:
        page.close()
    assert (lab["root"] / path.name).read_bytes() == path.read_bytes()  # nothing saved over it


def test_notebook_01_runs_and_its_temperature_slider_changes_the_sample(browser, lab):
    page, _ = open_notebook(browser, lab, NOTEBOOKS[0].name)
    try:
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        slider = page.locator(".widget-interact .widget-slider", has_text="temperature")
        slider.wait_for(timeout=300_000)  # the cells above train the model first
        output = page.locator(".widget-interact .widget-output")
        page.wait_for_function(
            "() => (document.querySelector('.widget-interact .widget-output') || {innerText: ''}).innerText.trim()",
            timeout=60_000,
        )
        before = output.inner_text().strip()
        page.screenshot(path=SHOTS / "01_before_slider.png")
        readout = slider.locator(".widget-readout")
        assert readout.inner_text().strip() == "0.80"
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type("1.5")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "(before) => document.querySelector('.widget-interact .widget-output').innerText.trim() !== before",
            arg=before,
            timeout=60_000,
        )
        after = output.inner_text().strip()
        page.screenshot(path=SHOTS / "01_after_slider.png")
        assert readout.inner_text().strip() == "1.50"
        assert after and after != before and re.fullmatch(r"[^\n]+", after), (before, after)
        assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    finally:
        page.close()
