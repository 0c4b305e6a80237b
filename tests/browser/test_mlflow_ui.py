"""The MLflow UI, in headless Chromium, over a store holding a smoke run of every model.

Every project under projects/ (and each of its conf/arch variants) is run once through the real
`mlflow run` CLI on the committed fixture data, with tiny settings; then `mlflow server` serves
the UI on 127.0.0.1 and the test reads what a user would see: the experiment page lists each
model's run, and the compare view shows their test_accuracy side by side.
Screenshots: tests/artifacts/mlflow_experiment.png, mlflow_compare.png and mlflow_model_version.png
(a registered version with its gate tags); `make screenshots` copies them into docs/images/.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
import pytest
import yaml

pytestmark = pytest.mark.browser

# Not imported from tests/conftest.py: several conftest.py files share the module name `conftest`.
REPO = Path(__file__).resolve().parents[2]
FIXTURE_DATA = REPO / "tests" / "fixtures"
ARTIFACTS = REPO / "tests" / "artifacts"
MLFLOW = str(Path(sys.executable).with_name("mlflow"))
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"  # tests/browser/install_chromium.sh
EXPERIMENT = "mnist"
# Tiny settings, passed only to projects whose MLproject declares the parameter.
TINY = {"num_boost_round": "5", "early_stopping_rounds": "2", "epochs": "1"}
WAIT = 120  # seconds; the first page load compiles a large JS bundle on a busy 2-core machine


def models() -> list[tuple[str, str, list[str]]]:
    """(project, run name, -P params) of every model: each project, once per conf/arch variant if it has them.

    The recipe names each run `<project>-<variant>`; a project's variant is its arch, or else the
    `variant` key of its conf/config.yaml.
    """
    found = []
    for mlproject in sorted((REPO / "projects").glob("*/MLproject")):
        project = mlproject.parent
        declared = yaml.safe_load(mlproject.read_text())["entry_points"]["main"]["parameters"]
        params = [f"{k}={v}" for k, v in TINY.items() if k in declared]
        params.append("overrides=gate.threshold=0.0")  # the fixture cannot reach the production bar
        archs = sorted(p.stem for p in (project / "conf" / "arch").glob("*.yaml"))
        if archs:
            found += [(project.name, f"{project.name}-{arch}", [*params, f"arch={arch}"]) for arch in archs]
        else:
            variant = yaml.safe_load((project / "conf" / "config.yaml").read_text())["variant"]
            found.append((project.name, f"{project.name}-{variant}", params))
    return found


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A SQLite store with one finished smoke run per model: {run name: Run}."""
    root = tmp_path_factory.mktemp("ui-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLRECIPES_DATA_DIR": str(FIXTURE_DATA)}
    for project, name, params in models():
        argv = [MLFLOW, "run", str(REPO / "projects" / project), "--env-manager", "virtualenv",
                "--experiment-name", EXPERIMENT]
        for p in params:
            argv += ["-P", p]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=root, timeout=3600)
        assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    return {"uri": uri, "root": root, "experiment_id": experiment.experiment_id, "runs": runs}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(store):
    """`mlflow server` on 127.0.0.1 over the store; yields its base URL, stops it afterwards."""
    port = free_port()
    log = open(store["root"] / "server.log", "w")
    server = subprocess.Popen(
        [MLFLOW, "server", "--backend-store-uri", store["uri"], "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        # No background job runner: the UI needs none, and it spawns a dozen worker processes.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        cwd=store["root"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT
        while True:
            assert server.poll() is None, (store["root"] / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "MLflow server gave no /health in time"
            time.sleep(0.5)  # polling interval, not an assertion
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # its own session: the server and its workers
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).is_file()]
    assert not missing, f"{missing} not found: run tests/browser/install_chromium.sh"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The closed network refuses Chromium's background connections: switch them all off.
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1920,1200",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))  # no selenium-manager download
    yield driver
    driver.quit()


def wait(driver, condition, what, timeout=WAIT):
    """WebDriverWait(...).until(condition), failing with `what` and the page's text."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(condition)
    except TimeoutException:
        page = driver.find_element(By.TAG_NAME, "body").text
        pytest.fail(f"{what}: not shown after {timeout}s; page text:\n{page[:3000]}")


def ui_metric(value: float) -> str:
    """A metric as the MLflow UI prints it (Utils.formatMetric, for 0.001 <= |value| < 10)."""
    text = repr(math.floor(1000 * value + 0.5) / 1000)  # Math.round(1e3 * value) / 1e3
    return text.removesuffix(".0")  # JS Number#toString prints 1, not 1.0


def close_assistant(driver):
    """The UI opens an MLflow Assistant side panel on every fresh profile; it hides part of the page."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, '[data-component-id="mlflow.assistant.chat_panel.close"]'):
        button.click()


def screenshot(driver, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / name))


# The compare view's metric table is a pair of virtualized grids, metric names | one column per run,
# under its section header; only the rows near the scroll position exist in the DOM.
METRIC_GRIDS = """
let box = arguments[0].parentElement;
while (box.querySelectorAll('.ReactVirtualized__Grid').length < 2) box = box.parentElement;
return [...box.querySelectorAll('.ReactVirtualized__Grid')].slice(-2);
"""
SCROLL = "arguments[0].scrollLeft = 0; arguments[0].scrollTop = arguments[1];"
ROW_CELLS = """
return [...arguments[0].querySelectorAll('div[style]')].filter(c => parseFloat(c.style.top) === arguments[1])
  .sort((a, b) => parseFloat(a.style.left) - parseFloat(b.style.left)).map(c => c.textContent);
"""


def test_store_has_a_run_of_every_model(store):
    assert sorted(store["runs"]) == sorted(name for _, name, _ in models())
    assert {r.info.status for r in store["runs"].values()} == {"FINISHED"}


def test_experiment_page_lists_every_model(store, ui, browser):
    from selenium.webdriver.common.by import By

    # The UI opens in its GenAI mode; a user picks "Model training" to see the runs table.
    browser.get(f"{ui}/#/experiments/{store['experiment_id']}/runs?workflowType=machine_learning")
    links = {run.info.run_name: f'a[href$="/runs/{run.info.run_id}"]' for run in store["runs"].values()}

    def every_run_listed(d):
        shown = {name: [a.text for a in d.find_elements(By.CSS_SELECTOR, css)] for name, css in links.items()}
        return all(name in texts for name, texts in shown.items())

    wait(browser, every_run_listed, f"runs table with {sorted(links)}")
    close_assistant(browser)
    screenshot(browser, "mlflow_experiment.png")


def test_compare_view_shows_accuracy_side_by_side(store, ui, browser):
    from selenium.webdriver.common.by import By

    runs = sorted(store["runs"].values(), key=lambda r: r.info.run_name)
    query = urllib.parse.urlencode({"runs": json.dumps([r.info.run_id for r in runs]),
                                    "experiments": json.dumps([store["experiment_id"]]),
                                    "workflowType": "machine_learning"})
    browser.get(f"{ui}/#/compare-runs?{query}")
    names = [r.info.run_name for r in runs]

    def run_names(d):  # the "Run Name:" row of the run details table, one cell per run
        cells = d.find_elements(By.XPATH, "//tr[th[normalize-space()='Run Name:']]/td")
        return [c.text for c in cells] == names

    wait(browser, run_names, f"run names {names} in order")
    close_assistant(browser)
    # Fold the plots and the long parameter table so the metrics sit under the run names.
    for header in browser.find_elements(By.CSS_SELECTOR, '[role="button"][aria-expanded="true"]'):
        if header.text.strip() in ("Visualizations", "Parameters"):
            header.click()

    def grids(d):  # looked up afresh each time: the UI re-renders the table as the page settles
        header = d.find_element(By.XPATH, "//*[@role='button' and normalize-space()='Metrics']")
        return d.execute_script(METRIC_GRIDS, header)

    def scroll_to(d, y):
        d.execute_script(SCROLL, grids(d)[1], y)

    def accuracy_label(d):  # page down the metrics until the test_accuracy row is rendered
        names, values = grids(d)
        found = names.find_elements(By.XPATH, ".//a[normalize-space()='test_accuracy']")
        if not found:
            scroll_to(d, values.get_property("scrollTop") + values.get_property("clientHeight"))
            return False
        top = d.execute_script("return parseFloat(arguments[0].parentElement.style.top)", found[0])
        return min(top, values.get_property("scrollHeight") - values.get_property("clientHeight")), top

    target, top = wait(browser, accuracy_label, "test_accuracy in the metrics table")
    # Bring the row to the top of the table. MLflow 3.17 moves the names column to where the values
    # were one scroll event earlier: scroll twice, one pixel apart, so each name sits beside its values.
    before = target - 1 if target > 0 else target + 1

    def accuracy_row(d):
        names, values = grids(d)
        at = values.get_property("scrollTop")
        if at != target or abs(names.get_property("scrollTop") - at) > 1:
            scroll_to(d, target if at == before else before)  # again if the table re-rendered meanwhile
            return False
        cells = d.execute_script(ROW_CELLS, values, top)
        return cells if len(cells) == len(runs) and all(cells) else False

    shown = wait(browser, accuracy_row, "test_accuracy of every run, beside its name")
    screenshot(browser, "mlflow_compare.png")
    expected = [ui_metric(r.data.metrics["test_accuracy"]) for r in runs]
    assert shown == expected, dict(zip(names, shown, strict=True))


def test_model_version_page_shows_the_gate_tags(store, ui, browser):
    """The page of a registered version shows the gate's verdict: gate.decision and gate.reason."""
    from selenium.webdriver.common.by import By

    client = mlflow.MlflowClient(store["uri"])
    name = sorted(m.name for m in client.search_registered_models())[0]
    version = client.get_model_version_by_alias(name, "champion")
    reason = version.tags["gate.reason"]
    browser.get(f"{ui}/#/models/{name}/versions/{version.version}")

    def gate_tags_shown(d):
        text = d.find_element(By.TAG_NAME, "body").text
        return "gate.decision" in text and "gate.reason" in text and reason[:40] in text

    wait(browser, gate_tags_shown, f"the gate tags of {name} version {version.version}")
    close_assistant(browser)
    screenshot(browser, "mlflow_model_version.png")
