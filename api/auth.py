"""Who is calling: a tenant, from a bearer API key. Keys are stored as SHA-256 hashes only."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session, select

from api.deps import SessionDep, SettingsDep
from models.tables import ApiKey, utcnow

bearer = HTTPBearer(auto_error=False, description="An API key issued with `python -m api.keys create`.")


class Unauthorized(Exception):
    def __init__(self, detail: str):
        self.detail = detail


@dataclass(frozen=True)
class Caller:
    tenant: str
    admin: bool

    @property
    def scope(self) -> str | None:
        """The tenant whose jobs this caller may see; None means every tenant."""
        return None if self.admin else self.tenant


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def get_caller(
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
) -> Caller:
    if not settings.auth_enabled:
        return Caller(tenant="default", admin=True)
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    row = session.exec(
        select(ApiKey).where(ApiKey.key_hash == hash_key(credentials.credentials), ApiKey.revoked_at.is_(None))
    ).first()
    if row is None:
        raise Unauthorized("invalid or revoked API key")
    return Caller(tenant=row.tenant, admin=row.admin)


CallerDep = Annotated[Caller, Depends(get_caller)]


def create_key(*, session: Session, tenant: str, admin: bool = False, label: str | None = None) -> str:
    """Returns the new key; only its hash is stored, so it cannot be shown again."""
    key = "plt_" + secrets.token_urlsafe(32)
    session.add(ApiKey(tenant=tenant, key_hash=hash_key(key), admin=admin, label=label))
    session.commit()
    return key


def revoke_key(*, session: Session, key: str) -> bool:
    row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).first()
    if row is None:
        return False
    row.revoked_at = utcnow()
    session.add(row)
    session.commit()
    return True
