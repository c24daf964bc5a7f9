"""A short typed walk through copilot with the client openapi-python-client generates.

Run by tests/clients/run.sh against a live server; checked by mypy --strict first.
"""

import os
import sys
from uuid import UUID

from copilot_client import AuthenticatedClient, Client
from copilot_client.api.auth import auth_login
from copilot_client.api.projects import projects_create, projects_get, projects_list, projects_update
from copilot_client.api.users import users_create, users_get
from copilot_client.models import (
    CreateProjectRequest,
    CreateUserRequest,
    ErrorBody,
    ListResponseProject,
    LoginBody,
    Project,
    TokenResponse,
    UpdateProjectRequest,
    User,
)


def main() -> int:
    base = os.environ["COPILOT_URL"] + "/api/v1"
    login = auth_login.sync(
        client=Client(base_url=base),
        body=LoginBody(username="admin", password=os.environ["COPILOT_ADMIN_PASSWORD"]),
    )
    assert isinstance(login, TokenResponse), login
    client = AuthenticatedClient(base_url=base, token=login.access_token)

    created = users_create.sync(
        client=client,
        body=CreateUserRequest(username="walker", email="walker@example.com", password="walker-pass-1"),
    )
    assert isinstance(created, User), created
    assert created.full_name is None  # a null field, typed `str | None`
    again = users_create.sync(
        client=client,
        body=CreateUserRequest(username="walker", email="walker2@example.com", password="walker-pass-1"),
    )
    assert isinstance(again, ErrorBody) and "username" in again.detail.lower(), again  # the 409

    for i in range(3):
        p = projects_create.sync(client=client, body=CreateProjectRequest(name=f"walk {i}", description="d"))
        assert isinstance(p, Project), p
    page = projects_list.sync(client=client, limit=2, skip=0)
    assert isinstance(page, ListResponseProject), page
    assert len(page.data) == 2 and page.total == 3 and page.has_more
    first = page.data[0]

    cleared = projects_update.sync(id=first.id, client=client, body=UpdateProjectRequest(description=None))
    assert isinstance(cleared, Project), cleared
    reread = projects_get.sync(id=first.id, client=client)
    assert isinstance(reread, Project) and reread.description is None, reread  # cleared with null

    missing = users_get.sync_detailed(id=UUID("01900000-0000-7000-8000-000000000000"), client=client)
    assert missing.status_code == 404 and isinstance(missing.parsed, ErrorBody), missing  # the 404
    print("python client walk: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
