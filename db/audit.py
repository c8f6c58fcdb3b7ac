"""The append-only audit trail. There is deliberately no function that changes or removes an event."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import AuditEvent


def record(session: Session, event: str, study_uid: str | None = None, **details: Any) -> None:
    """Add an audit event to the session's transaction (it is written when the caller commits)."""
    session.add(AuditEvent(at=time.time(), event=event, study_uid=study_uid, details=details))


def trail(session: Session, study_uid: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.study_uid == study_uid).order_by(AuditEvent.id)))
