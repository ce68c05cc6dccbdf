"""DVC on S3-compatible object storage: a real S3 server (moto, in server mode) on the loopback address, the
smoke run's datasets and model pushed with `dvc push`, the outputs and the cache removed, and `dvc pull`
bringing them back byte-identical. Credentials come from the environment only, never from a committed file."""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import digests, free_port, sh

pytestmark = pytest.mark.slow

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "cmbml-test-key", "AWS_SECRET_ACCESS_KEY": "cmbml-test-secret"}
BUCKET = "cmbml-dvc"


@pytest.fixture
def s3_endpoint(tmp_path):
    """A moto S3 server on 127.0.0.1 with an empty bucket; stopped after the test."""
    import boto3

    port = free_port()
    log = (tmp_path / "moto.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    try:
        for _ in range(200):  # the server listens within about a second
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:  # noqa: BLE001 - connection refused until it listens
                time.sleep(0.1)
        else:
            pytest.fail(f"moto_server did not start on {endpoint}: {(tmp_path / 'moto.log').read_text()}")
        yield endpoint, client
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_push_a_smoke_run_to_s3_and_pull_it_back_byte_identical(repo_copy, s3_endpoint):
    root, env = repo_copy
    endpoint, client = s3_endpoint
    env = {**env, **CREDENTIALS}
    # the smoke lensing run up to the trained model (stages another test already ran come from the run cache)
    sh(
        [
            "dvc",
            "exp",
            "run",
            "-n",
            "smoke-s3",
            "-S",
            "scale=smoke",
            "-S",
            "kappa_exaggeration_factor=10",
            "lensing_train",
        ],
        root,
        env,
    )
    # the README's recipe: remote and endpoint in .dvc/config.local (not committed), credentials from the environment
    sh(["dvc", "remote", "add", "--local", "s3", f"s3://{BUCKET}/dvcstore"], root, env)
    sh(["dvc", "remote", "modify", "--local", "s3", "endpointurl", endpoint], root, env)
    outputs = ["datasets/lensing", "models/lensing"]
    before = digests(root, outputs)
    assert any(k.endswith("training.h5") for k in before) and any(k.endswith("model.keras") for k in before)

    sh(["dvc", "push", "-r", "s3", "--with-deps", "lensing_train"], root, env)
    stored = client.list_objects_v2(Bucket=BUCKET, Prefix="dvcstore/")["KeyCount"]
    assert stored >= len(before)  # every file of the outputs (and the upstream ones) is an object

    cache, kept = root / ".dvc" / "cache", root / ".dvc" / "cache.kept"
    cache.rename(kept)  # other tests share this copy: its cache comes back afterwards
    try:
        for folder in outputs:
            shutil.rmtree(root / folder)
        sh(["dvc", "pull", "-r", "s3", "--with-deps", "lensing_train"], root, env)
        assert digests(root, outputs) == before
        # without credentials the same pull is refused: nothing in the repository grants access
        shutil.rmtree(cache)
        no_credentials = {k: v for k, v in env.items() if k not in CREDENTIALS}
        failed = subprocess.run(
            ["dvc", "pull", "-r", "s3", "lensing_train"], cwd=root, env=no_credentials, capture_output=True, text=True
        )
        assert failed.returncode != 0 and "credentials" in (failed.stdout + failed.stderr).lower(), failed.stderr[
            -2000:
        ]
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        kept.rename(cache)
    committed = sh(["git", "show", "HEAD:.dvc/config"], root, env).stdout
    assert "endpointurl" not in committed and CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in committed
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in (root / ".dvc" / "config.local").read_text()
