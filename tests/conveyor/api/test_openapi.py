"""A schemathesis run against the API's published OpenAPI document, with a token that may do
everything the routes allow: no server error, no status code the document does not list, and no
answer that breaks its schema. Bounded (a few cases per operation) so that CI stays short."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conveyor import limits
from conveyor.api import ApiSettings, create_app
from conveyor.api.tokens import TokenStore
from conveyor.config import Project
from conveyor.ledger import Ledger
from conveyor.ledger.db import make_engine
from tests.conveyor.api.conftest import CONFIG

CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)


TOKENS: dict[str, str] = {}


def _schema() -> schemathesis.BaseSchema:
    """The published document of an app on a fresh SQLite ledger (built when the module is
    collected: the schemathesis decorator needs the schema then)."""
    root = Path(tempfile.mkdtemp(prefix="conveyor-openapi-"))
    (root / "conveyor.yaml").write_text(CONFIG, encoding="utf-8")
    project = Project.load(root)
    limits.use(limits.DEFAULT)
    engine = make_engine(f"sqlite:///{root / 'ledger.db'}")
    ledger = Ledger(engine, project.router)
    ledger.upgrade()
    store = TokenStore.of_project(root)
    TOKENS.update({scope: store.add(scope, scope) for scope in ("ingest", "operate")})
    app = create_app(project, ledger=ledger, settings=ApiSettings(max_body_bytes=256 * 1024))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = _schema()


@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_api_keeps_to_its_published_document(case: schemathesis.Case) -> None:
    posting = case.method.upper() == "POST" and case.path != "/v1/replay"
    token = TOKENS["ingest" if posting else "operate"]
    response = case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
    assert response.status_code < 500
