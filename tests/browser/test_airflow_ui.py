"""The Airflow 3 UI, in headless Chromium, over a metadata DB holding one real run of mlrecipes_xgboost.

A throw-away AIRFLOW_HOME (SQLite) is migrated, the xgboost DAG runs once for real with
`dag.test()` (tests/airflow/run_dag.py: the task trains on the committed fixture, limit=300, into a
temporary MLflow store; the test also puts every DAG of airflow/dags into the DB), then
`airflow api-server` serves the UI on 127.0.0.1 with login off (the simple auth manager's
all-admins setting). The test reads what a user would see: the DAG's grid with the successful run,
and its trigger form with the schedule's fields.
Screenshots: tests/artifacts/airflow_grid.png and airflow_trigger_form.png; `make screenshots`
copies them into docs/images/.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import test_mlflow_ui
from test_mlflow_ui import free_port, screenshot, wait

pytestmark = pytest.mark.browser
browser = test_mlflow_ui.browser  # the same headless Chromium fixture (flags for the closed network)

REPO = Path(__file__).resolve().parents[2]
FIXTURE_DATA = REPO / "tests" / "fixtures"
RUN_DAG = REPO / "tests" / "airflow" / "run_dag.py"  # dag.test() of one DAG, prints a RESULT line
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_ID = "mlrecipes_xgboost"
# As tests/airflow/test_dag_run.py: small and fast; the low gate lets a 300-image model register.
CONF = {"limit": 300, "num_boost_round": 10, "overrides": "gate.threshold=0.1"}
WAIT = 120  # seconds; the API server's start and the UI's first page load on a busy 2-core machine


def stop(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM the process group of `proc` (started with start_new_session), SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    """A migrated AIRFLOW_HOME with one finished run of DAG_ID: {"env", "home", "result"}."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if k not in ("MLRECIPES_SCHEDULE", "MLRECIPES_PROFILE")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "airflow" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # no login page; 127.0.0.1 only
        "AIRFLOW__API__WORKERS": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "MLRECIPES_DATA_DIR": str(FIXTURE_DATA),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # the task's mlrecipes
    })
    proc = subprocess.run([AIRFLOW, "db", "migrate"], capture_output=True, text=True, env=env, cwd=home,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # dag.test() also writes every DAG of the bundle (airflow/dags) to the DB, as the DAG processor would.
    run = subprocess.Popen([sys.executable, str(RUN_DAG), DAG_ID, json.dumps(CONF)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=env, cwd=home, start_new_session=True)
    try:
        out, _ = run.communicate(timeout=900)
    finally:
        stop(run)
    assert run.returncode == 0, out[-4000:]
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert lines, out[-4000:]
    return {"env": env, "home": home, "result": json.loads(lines[-1][len("RESULT "):])}


@pytest.fixture(scope="module")
def ui(airflow):
    """`airflow api-server` on 127.0.0.1 over that DB; yields its base URL, stops it afterwards."""
    port = free_port()
    home = airflow["home"]
    log = open(home / "api-server.log", "w")
    server = subprocess.Popen([AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              env={**airflow["env"], "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}"},
                              cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT
        while True:
            assert server.poll() is None, (home / "api-server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=5) as response:
                    if json.load(response).get("metadatabase", {}).get("status") == "healthy":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Airflow API server not healthy in time"
            time.sleep(0.5)  # polling interval, not an assertion
        yield base
    finally:
        stop(server)
        log.close()


def body_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def test_the_dag_ran_for_real(airflow):
    result = airflow["result"]
    assert result["state"] == "success" and result["tasks"] == {"mlflow_run": "success"}
    assert result["xcom"]["mlflow_run_id"]


def test_grid_shows_the_run(airflow, ui, browser):
    run_id = airflow["result"]["dag_run_id"]
    browser.get(f"{ui}/dags/{DAG_ID}/runs/{run_id}")

    def run_shown(d):  # the breadcrumb's DAG, the run's header with its state badge, its task
        text = body_text(d)
        return all(shown in text for shown in (DAG_ID, run_id, "Success", "mlflow_run"))

    wait(browser, run_shown, f"{DAG_ID}, its run {run_id} in state Success", timeout=WAIT)
    screenshot(browser, "airflow_grid.png")


# Clicked in the page, not through a WebElement: the DAG page re-renders as its data arrives.
CLICK_TRIGGER = """
const button = [...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'Trigger');
if (button) button.click();
return !!button;
"""
DIALOG = ".chakra-dialog__content"
SUBMIT = '[data-testid="trigger-dag-submit"]'  # the form's own Trigger button


def test_trigger_form_shows_the_schedule_fields(airflow, ui, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{ui}/dags/{DAG_ID}")
    wait(browser, lambda d: d.execute_script(CLICK_TRIGGER), "the Trigger button", timeout=WAIT)
    fields = ("limit", "overrides", "window_column")  # the schedule's form, conf/schedule.yaml

    def form_shown(d):
        dialogs = d.find_elements(By.CSS_SELECTOR, DIALOG)
        text = dialogs[0].text if dialogs else ""
        return f"Trigger Dag - {DAG_ID}" in text and all(f"\n{name}" in text for name in fields)

    wait(browser, form_shown, f"the trigger form of {DAG_ID} with {fields}", timeout=WAIT)
    # A window tall enough for the whole form in one picture, restored afterwards.
    size = browser.get_window_size()
    needed = browser.execute_script(
        f"const c = document.querySelector('{DIALOG}'); "
        "return c.getBoundingClientRect().top + c.scrollHeight + 64 + window.outerHeight - window.innerHeight")
    browser.set_window_size(size["width"], max(size["height"], int(needed)))
    try:
        screenshot(browser, "airflow_trigger_form.png")
    finally:
        browser.set_window_size(size["width"], size["height"])
    # The defaults as they stand must be submittable: Airflow's form disables its Trigger button
    # while a required field (a type without "null") is empty.
    assert browser.find_element(By.CSS_SELECTOR, SUBMIT).is_enabled(), "the form's defaults cannot be triggered"
