"""The service's tables: studies and their instances, jobs, the outbox of result sends, and the audit trail.

Times are UTC seconds since the epoch (floats): the same comparisons work on SQLite and PostgreSQL and no
time-zone conversion can shift a lease. Only the patient identifiers needed to find a study are kept
(patient ID, accession number), never names.
"""

from __future__ import annotations

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

UID = String(64)


class Base(DeclarativeBase):
    pass


class JobState:
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    FINAL = (DONE, FAILED, REJECTED)


class SendState:
    PENDING = "PENDING"
    SENDING = "SENDING"
    SENT = "SENT"
    FAILED = "FAILED"


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(UID, unique=True)
    patient_id: Mapped[str | None] = mapped_column(String(64))
    accession_number: Mapped[str | None] = mapped_column(String(64))
    first_received_at: Mapped[float] = mapped_column(Float)
    last_received_at: Mapped[float] = mapped_column(Float, index=True)
    # Bumped for every new instance; a study is due for a run when received_seq > queued_seq and quiet.
    received_seq: Mapped[int] = mapped_column(Integer, default=0)
    queued_seq: Mapped[int] = mapped_column(Integer, default=0)

    instances: Mapped[list[Instance]] = relationship(back_populates="study", order_by="Instance.id")
    jobs: Mapped[list[Job]] = relationship(back_populates="study", order_by="Job.run_number")


class Instance(Base):
    __tablename__ = "instances"
    __table_args__ = (UniqueConstraint("study_id", "sop_instance_uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID)
    series_uid: Mapped[str] = mapped_column(UID)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    modality: Mapped[str | None] = mapped_column(String(16))
    body_part: Mapped[str | None] = mapped_column(String(64))
    series_description: Mapped[str | None] = mapped_column(String(128))
    spool_path: Mapped[str] = mapped_column(String(255))  # relative to the spool folder; a name we made
    size_bytes: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[float] = mapped_column(Float)
    # When retention removed the spool file; the row stays as the record of what was received.
    purged_at: Mapped[float | None] = mapped_column(Float)

    study: Mapped[Study] = relationship(back_populates="instances")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("study_id", "run_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    study_uid: Mapped[str] = mapped_column(UID, index=True)
    run_number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[float] = mapped_column(Float, default=0.0)  # retry backoff
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    heartbeat_at: Mapped[float | None] = mapped_column(Float)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    # Minted when the job is created so that every send and every retry carries the same UIDs.
    seg_series_uid: Mapped[str] = mapped_column(UID)
    seg_sop_instance_uid: Mapped[str] = mapped_column(UID)
    sr_series_uid: Mapped[str] = mapped_column(UID)
    sr_sop_instance_uid: Mapped[str] = mapped_column(UID)
    instance_count: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[float | None] = mapped_column(Float)  # first instance of the study
    stable_at: Mapped[float] = mapped_column(Float)  # job created
    started_at: Mapped[float | None] = mapped_column(Float)
    loaded_at: Mapped[float | None] = mapped_column(Float)
    inference_seconds: Mapped[float | None] = mapped_column(Float)
    encoded_at: Mapped[float | None] = mapped_column(Float)
    sent_at: Mapped[float | None] = mapped_column(Float)  # all sends succeeded
    finished_at: Mapped[float | None] = mapped_column(Float)
    result_dir: Mapped[str | None] = mapped_column(String(255))
    result: Mapped[dict | None] = mapped_column(JSON)  # volumes per type, ABC/2, classification, series used

    study: Mapped[Study] = relationship(back_populates="jobs")
    sends: Mapped[list[Send]] = relationship(back_populates="job", order_by="Send.id")


class Send(Base):
    """One result object to one destination: the outbox row the sender retries until SENT or FAILED."""

    __tablename__ = "sends"
    __table_args__ = (UniqueConstraint("job_id", "destination", "sop_instance_uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    destination: Mapped[str] = mapped_column(String(128))  # AE@host:port
    ae_title: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    tls: Mapped[bool] = mapped_column(default=False)
    object_kind: Mapped[str] = mapped_column(String(8))  # SEG | SR
    sop_instance_uid: Mapped[str] = mapped_column(UID)
    path: Mapped[str] = mapped_column(String(512))
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    last_status: Mapped[int | None] = mapped_column(Integer)  # DIMSE status of the last try
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    sent_at: Mapped[float | None] = mapped_column(Float)

    job: Mapped[Job] = relationship(back_populates="sends")


class AuditEvent(Base):
    """Append-only: the code has no update or delete path, and on PostgreSQL a trigger forbids both."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    event: Mapped[str] = mapped_column(String(64))
    study_uid: Mapped[str | None] = mapped_column(UID, index=True)
    details: Mapped[dict] = mapped_column(JSON, default=dict)
