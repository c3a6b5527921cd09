"""Dependency aliases for routes."""

from typing import Annotated

from fastapi import Depends
from sqlmodel import Session

from models.db import get_session
from models.settings import Settings, get_settings

SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
