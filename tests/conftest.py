"""Shared fixtures: a throw-away SQLite tracking store and a real `mlflow run` helper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FIXTURE_DATA, REPO, ProjectRun, mlflow_run

sys.path.insert(0, str(REPO / "tests" / "fixtures"))  # the tick-table generator


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture
def run_project(tracking_uri, tmp_path):
    """Run projects/<name> as an MLflow Project for real, in its own environment, on the
    fixtures (helpers.mlflow_run; `cli=True`: through the `mlflow run` CLI itself)."""

    def _run(project: str, *params: str, experiment: str = "mnist", env: dict | None = None,
             timeout: int = 1800, cli: bool = False) -> ProjectRun:
        return mlflow_run(tracking_uri, project, *params, experiment=experiment, cwd=tmp_path, cli=cli,
                          timeout=timeout, env={"MLRECIPES_DATA_DIR": str(FIXTURE_DATA), **(env or {})})

    return _run


@pytest.fixture(scope="session")
def ticks(tmp_path_factory):
    """The synthetic tick table (tests/fixtures/ticks.py) as Hive-partitioned Parquet and as Delta."""
    import ticks as generator

    out = tmp_path_factory.mktemp("ticks")
    table = generator.make()
    return {"table": table, "parquet": generator.write_parquet(table, out), "delta": generator.write_delta(table, out)}


# moto counts every request from its start; the first ones (unauthenticated) create the IAM user
# whose keys the tests use, after which moto enforces credentials like S3 does.
_MOTO_SETUP_REQUESTS = 4


@pytest.fixture(scope="session")
def s3(ticks, tmp_path_factory):
    """moto's standalone S3 server on 127.0.0.1 with credentials enforced, a bucket `lake`
    holding the tick table (Parquet + Delta), and the AWS variables that reach it."""
    import socket
    import time

    import boto3

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(_MOTO_SETUP_REQUESTS)},
        stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:  # a TCP connect, not a request: requests count against the setup budget
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    admin = {"endpoint_url": endpoint, "region_name": "us-east-1",
             "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
    iam = boto3.client("iam", **admin)
    iam.create_user(UserName="ml")
    key = iam.create_access_key(UserName="ml")["AccessKey"]
    policy = iam.create_policy(PolicyName="lake", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    iam.attach_user_policy(UserName="ml", PolicyArn=policy["Policy"]["Arn"])
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
           "AWS_EC2_METADATA_DISABLED": "true"}
    bucket = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    bucket.create_bucket(Bucket="lake")
    for name in ("parquet", "delta"):
        root = ticks[name]
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            bucket.upload_file(str(path), "lake", f"{root.name}/{path.relative_to(root)}")
    yield {"endpoint": endpoint, "env": env, "bucket": "lake"}
    server.terminate()
    server.wait(timeout=10)
