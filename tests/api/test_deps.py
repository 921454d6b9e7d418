"""The key dependencies in process, on the real app and a real database: admin routes need an admin
key (api.deps), and the configured default rate applies to every key (api.limits).

The same rules over HTTP against running stacks, with limits set per key from the command line,
are tests/e2e/api/test_access.py."""

from __future__ import annotations

from api.deps import AdminKey
from tests.support.app import in_process_app
from tests.support.images import job_body


def test_admin_routes_need_an_admin_key(tmp_path) -> None:
    client, keys = in_process_app(tmp_path)

    @client.app.get("/admin/ping")  # type: ignore[attr-defined]
    def ping(key: AdminKey) -> dict[str, str]:
        return {"admin": key.name}

    with client:
        assert client.get("/admin/ping", headers={"x-api-key": keys["admin"]}).json() == {"admin": "a"}
        refused = client.get("/admin/ping", headers={"x-api-key": keys["user"]})
        assert refused.status_code == 403 and refused.json() == {"error": "this route needs an admin key"}
        assert client.get("/admin/ping").status_code == 401
        assert client.get("/admin/ping", headers={"x-api-key": "iq_unknown"}).status_code == 401


def test_the_configured_default_rate_applies_to_every_key(tmp_path) -> None:
    client, keys = in_process_app(tmp_path, rate_limit_per_minute=2, rate_limit_burst=2)
    with client:
        user = {"x-api-key": keys["user"]}
        codes = [client.post("/v2/no-such-model", json=job_body(), headers=user).status_code for _ in range(3)]
        other = client.post("/v2/no-such-model", json=job_body(), headers={"x-api-key": keys["admin"]})
    assert codes == [404, 404, 429]
    assert other.status_code == 404, "one key's bucket is not another's"
