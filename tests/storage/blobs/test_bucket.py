"""`inpaint-admin storage init`: the bucket and its one expiration rule, on a real S3 server (moto),
any number of times; a server without lifecycles (stubbed: moto has them) still succeeds, warned."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from admin.cli import main
from storage.blobs.bucket import EXPIRATION_DAYS, RULE_ID, init_bucket
from storage.errors import InvalidInput, Unavailable
from tests.support.services import free_port, s3_client
from tests.support.stack import unique_name


@pytest.fixture
def s3_env(services: dict[str, str], tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The environment `inpaint-admin` reads in the compose file's storage-init service; the bucket's name."""
    bucket = unique_name("iq-init-")
    for name, value in {
        "INPAINT_DATA_DIR": str(tmp_path),
        "INPAINT_STORAGE_BACKEND": "s3",
        "INPAINT_S3_ENDPOINT_URL": services["INPAINT_TEST_S3_ENDPOINT"],
        "INPAINT_S3_BUCKET": bucket,
        "INPAINT_S3_ACCESS_KEY_ID": "test",
        "INPAINT_S3_SECRET_ACCESS_KEY": "test",
    }.items():
        monkeypatch.setenv(name, value)
    return bucket


def test_creates_the_bucket_with_one_expiration_rule_however_often_it_runs(
    s3_env: str, services: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    client = s3_client(services["INPAINT_TEST_S3_ENDPOINT"])
    with pytest.raises(client.exceptions.ClientError):
        client.head_bucket(Bucket=s3_env)

    for _ in range(3):
        main(["storage", "init"])

    client.head_bucket(Bucket=s3_env)
    rules = client.get_bucket_lifecycle_configuration(Bucket=s3_env)["Rules"]
    assert len(rules) == 1, rules
    assert rules[0]["ID"] == RULE_ID and rules[0]["Status"] == "Enabled"
    assert rules[0]["Expiration"]["Days"] == EXPIRATION_DAYS == 1
    out = capsys.readouterr()
    assert out.out.count(f"bucket {s3_env!r}: created") == 1
    assert out.out.count(f"bucket {s3_env!r}: already exists") == 2
    assert out.err == ""


def test_an_existing_bucket_keeps_its_objects(s3_env: str, services: dict[str, str]) -> None:
    client = s3_client(services["INPAINT_TEST_S3_ENDPOINT"])
    client.create_bucket(Bucket=s3_env)
    client.put_object(Bucket=s3_env, Key="jobs/a/output/1-0.png", Body=b"png")
    main(["storage", "init"])
    assert client.get_object(Bucket=s3_env, Key="jobs/a/output/1-0.png")["Body"].read() == b"png"


def stubbed_client() -> Any:
    return boto3.client(
        "s3",
        endpoint_url="http://s3.invalid:8333",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )


@pytest.mark.parametrize(("code", "status"), [("NotImplemented", 501), ("MethodNotAllowed", 405)])
def test_a_server_without_lifecycles_still_succeeds_with_a_warning(code: str, status: int) -> None:
    client = stubbed_client()
    with Stubber(client) as stub:
        stub.add_client_error("head_bucket", service_error_code="404", http_status_code=404)
        stub.add_response("create_bucket", {}, {"Bucket": "results"})
        stub.add_client_error("put_bucket_lifecycle_configuration", service_error_code=code, http_status_code=status)
        report = init_bucket(client, "results", wait_seconds=0)
        stub.assert_no_pending_responses()
    assert report.created and report.lifecycle_unsupported == code
    warning = report.warning()
    assert warning is not None and "does not implement bucket lifecycles" in warning and code in warning
    assert "reaper" in warning


def test_a_race_lost_to_another_creator_is_no_error() -> None:
    client = stubbed_client()
    with Stubber(client) as stub:
        stub.add_client_error("head_bucket", service_error_code="404", http_status_code=404)
        stub.add_client_error("create_bucket", service_error_code="BucketAlreadyOwnedByYou", http_status_code=409)
        stub.add_response("put_bucket_lifecycle_configuration", {})
        report = init_bucket(client, "results", wait_seconds=0)
    assert not report.created and report.lifecycle_unsupported is None


def test_a_refusal_names_the_setting_the_bucket_and_the_error_code() -> None:
    client = stubbed_client()
    with Stubber(client) as stub:
        stub.add_client_error("head_bucket", service_error_code="403", http_status_code=403)
        with pytest.raises(InvalidInput) as refused:
            init_bucket(client, "someone-elses", wait_seconds=0)
    assert refused.value.field == "INPAINT_S3_BUCKET" and refused.value.value == "someone-elses"
    assert "HeadBucket on 'someone-elses' (403)" in refused.value.message


def test_a_server_that_stays_down_is_reported_unavailable() -> None:
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    with pytest.raises(Unavailable, match="creating 'results': the S3 server did not answer for 1 s"):
        init_bucket(client, "results", wait_seconds=1)


def test_the_local_backend_has_nothing_to_do(tmp_path, monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("INPAINT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("INPAINT_STORAGE_BACKEND", "local")
    main(["storage", "init"])
    assert "nothing to do" in capsys.readouterr().out
