from __future__ import annotations

from dataclasses import dataclass

from api.errors import Forbidden


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user, the namespaces they may reach, and the token's scope."""

    account_id: str
    name: str
    is_admin: bool
    namespaces: frozenset[str]
    token_id: str
    token_name: str
    endpoint_scope: str | None = None

    def may_reach(self, namespace: str) -> bool:
        return self.is_admin or namespace in self.namespaces

    def require_namespace(self, namespace: str) -> None:
        """Foreign namespaces answer 403, whether or not they exist, so existence does not leak."""
        if not self.may_reach(namespace):
            raise Forbidden(
                f"you are not a member of namespace {namespace!r}: use a namespace you belong to "
                f"({', '.join(sorted(self.namespaces))}) or ask an admin to add you to the org"
            )

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this call needs an admin token")

    def require_control_plane(self) -> None:
        if self.endpoint_scope is not None:
            raise Forbidden(
                "this token is scoped to one endpoint and only works on the data plane (the gateway); "
                "use an unscoped token for the API"
            )
