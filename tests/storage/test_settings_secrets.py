"""Secrets from files (INPAINT_<FIELD>_FILE) and the database password: values arrive, conflicts
and unreadable files stop start-up naming the variables, and no error quotes a secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from storage.settings import Settings, is_secret, load_settings

SECRET = "s3cr3t-value-that-must-not-leak"
SECRET_FIELDS = [name for name, field in Settings.model_fields.items() if is_secret(field)]


def secret_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "secret"
    path.write_text(text)
    return path


def test_every_secret_field_is_covered() -> None:
    assert {
        "s3_secret_access_key",
        "secret_key",
        "bootstrap_api_key",
        "bootstrap_webhook_secret",
        "metrics_token",
        "database_password",
    } <= set(SECRET_FIELDS)


@pytest.mark.parametrize("field", SECRET_FIELDS)
def test_a_secret_comes_from_its_file_with_one_newline_stripped(
    field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"INPAINT_{field.upper()}_FILE", str(secret_file(tmp_path, SECRET + "\n\n")))
    if field == "database_password":
        monkeypatch.setenv("INPAINT_DATABASE_URL", "postgresql+psycopg://inpaint@db.internal/inpaint")
    value = getattr(load_settings(data_dir=tmp_path), field)
    assert value.get_secret_value() == SECRET + "\n"  # one newline only: the rest is the value's


def test_a_file_without_a_trailing_newline_is_taken_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INPAINT_SECRET_KEY_FILE", str(secret_file(tmp_path, SECRET)))
    settings = load_settings(data_dir=tmp_path)
    assert settings.secret_key is not None and settings.secret_key.get_secret_value() == SECRET
    assert settings.signing_key == SECRET.encode()


def test_the_variable_and_its_file_together_are_refused_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INPAINT_METRICS_TOKEN", SECRET)
    monkeypatch.setenv("INPAINT_METRICS_TOKEN_FILE", str(secret_file(tmp_path, SECRET + "-other")))
    with pytest.raises(ValueError, match="INPAINT_METRICS_TOKEN and INPAINT_METRICS_TOKEN_FILE") as caught:
        load_settings(data_dir=tmp_path)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_an_unreadable_file_is_refused_naming_the_variable_and_path(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "absent" if kind == "missing" else tmp_path
    monkeypatch.setenv("INPAINT_BOOTSTRAP_API_KEY_FILE", str(path))
    with pytest.raises(ValueError, match="INPAINT_BOOTSTRAP_API_KEY_FILE") as caught:
        load_settings(data_dir=tmp_path)
    assert str(path) in str(caught.value)


def test_the_database_password_lands_in_the_url_and_its_repr_hides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "p@ss:w/rd-" + SECRET  # characters a URL must escape
    monkeypatch.setenv("INPAINT_DATABASE_URL", "postgresql+psycopg://inpaint@db.internal:5432/inpaint")
    monkeypatch.setenv("INPAINT_DATABASE_PASSWORD_FILE", str(secret_file(tmp_path, password + "\n")))
    settings = load_settings(data_dir=tmp_path)
    url = make_url(settings.resolved_database_url)
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "inpaint",
        password,
        "db.internal",
        5432,
        "inpaint",
    )
    assert SECRET not in repr(url) and SECRET not in repr(settings) and SECRET not in str(settings)


@pytest.mark.parametrize("database_url", [None, "sqlite:///elsewhere.db"])
def test_a_database_password_with_sqlite_is_refused(
    database_url: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INPAINT_DATABASE_PASSWORD", SECRET)
    if database_url:
        monkeypatch.setenv("INPAINT_DATABASE_URL", database_url)
    with pytest.raises(ValidationError, match="INPAINT_DATABASE_PASSWORD") as caught:
        load_settings(data_dir=tmp_path)
    assert SECRET not in str(caught.value)


def test_a_password_in_both_places_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INPAINT_DATABASE_URL", "postgresql+psycopg://inpaint:old-pw-in-url@db.internal/inpaint")
    monkeypatch.setenv("INPAINT_DATABASE_PASSWORD", SECRET)
    with pytest.raises(ValidationError, match="carries a password too") as caught:
        load_settings(data_dir=tmp_path)
    assert SECRET not in str(caught.value) and "old-pw-in-url" not in str(caught.value)


def test_no_validation_error_quotes_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The production check fails on a short key while a long token is set: pydantic would quote the
    input (the token among it) unless the settings hide their input in errors."""
    monkeypatch.setenv("INPAINT_ENVIRONMENT", "production")
    monkeypatch.setenv("INPAINT_SECRET_KEY", "short")
    monkeypatch.setenv("INPAINT_METRICS_TOKEN_FILE", str(secret_file(tmp_path, SECRET)))
    with pytest.raises(ValidationError, match="INPAINT_SECRET_KEY") as caught:
        load_settings(data_dir=tmp_path)
    assert SECRET not in str(caught.value) and "short" not in str(caught.value)


def test_a_database_password_needs_a_user_in_the_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INPAINT_DATABASE_URL", "postgresql+psycopg://db.internal/inpaint")
    monkeypatch.setenv("INPAINT_DATABASE_PASSWORD", SECRET)
    with pytest.raises(ValidationError, match="names no user") as caught:
        load_settings(data_dir=tmp_path)
    assert SECRET not in str(caught.value)


def test_a_socket_url_keeps_its_query(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INPAINT_DATABASE_URL", "postgresql+psycopg://inpaint@/inpaint?host=/run/postgresql")
    monkeypatch.setenv("INPAINT_DATABASE_PASSWORD", "a b/c")
    url = make_url(load_settings(data_dir=tmp_path).resolved_database_url)
    assert (url.username, url.password, url.host, url.database) == ("inpaint", "a b/c", None, "inpaint")
    assert url.query == {"host": "/run/postgresql"}


@pytest.mark.parametrize("field", SECRET_FIELDS)
def test_an_empty_secret_is_unset(field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`INPAINT_BOOTSTRAP_API_KEY=` in an env file must not become an empty key (the API would
    create a random admin key nobody sees at every start), nor an empty token or password."""
    monkeypatch.setenv(f"INPAINT_{field.upper()}", "")
    assert getattr(load_settings(data_dir=tmp_path), field) is None
    monkeypatch.delenv(f"INPAINT_{field.upper()}")
    monkeypatch.setenv(f"INPAINT_{field.upper()}_FILE", str(secret_file(tmp_path, "\n")))
    assert getattr(load_settings(data_dir=tmp_path), field) is None
