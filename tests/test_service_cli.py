"""`ichvol listen` as a subprocess with real DCMTK peers (allow-list, a non-CT study REJECTED with its reason
and nothing sent, clean SIGTERM shutdown), then `report` and `resubmit` on its database."""

from __future__ import annotations

import json

import pydicom
import pytest
from peers import (
    IchvolService,
    echoscu,
    free_port,
    ichvol_config,
    require,
    storescu,
    toml_dumps,
    wait_until,
    write_ct_series,
)
from sqlalchemy import select
from typer.testing import CliRunner

from ichvol.cli import app
from ichvol.config import load_config
from ichvol.db.engine import open_database
from ichvol.db.models import AuditEvent, Job, JobState
from ichvol.errors import IchvolError


def ichvol(*args, config):
    result = CliRunner().invoke(app, [*args, "--config", str(config)])
    if result.exception is not None:
        raise result.exception
    return json.loads(result.stdout) if "--json" in args else result.stdout


def test_listen_rejects_non_ct_study_and_reports_it(tmp_path):
    require("storescu")
    port = free_port()
    config_path = tmp_path / "ichvol.toml"
    config_path.write_text(toml_dumps(ichvol_config(tmp_path / "var", port, [("PACS", "127.0.0.1", free_port())],
                                                    listener={"min_free_mb": 1})))
    sessions = open_database(load_config(config_path).database_url)
    files = write_ct_series(tmp_path / "mr", slices=12, modality="MR", patient_id="PID-CLI")
    study_uid = pydicom.dcmread(files[0]).StudyInstanceUID
    with IchvolService(tmp_path, config_path, "listen", listen_port=port) as service:
        assert echoscu(port).returncode == 0
        assert echoscu(port, calling_aet="STRANGER").returncode != 0
        assert storescu(port, files).returncode == 0

        def rejected() -> bool:
            with sessions() as s:
                return s.scalar(select(Job.state).where(Job.study_uid == study_uid)) == JobState.REJECTED

        wait_until(rejected, 60, "the MR study to be rejected", peers=[service])
        service.stop()
        assert service.returncode == 0  # SIGTERM: clean shutdown
    [study] = ichvol("report", study_uid, "--json", config=config_path)
    [job] = study["jobs"]
    assert "modality MR not in ['CT']" in job["error"] and job["sends"] == []
    assert study["instances"] == 12
    events = [e["event"] for e in study["audit"]]
    assert events == ["instances_received", "job_created", "job_rejected", "report_queried"]
    # Found by patient ID too; listed among recent rejected jobs; the rich rendering runs.
    assert ichvol("report", "PID-CLI", "--json", config=config_path)[0]["study_uid"] == study_uid
    listed = ichvol("report", "--since", "1h", "--status", "rejected", "--json", config=config_path)
    assert [row["study_uid"] for row in listed] == [study_uid]
    assert ichvol("report", "--since", "1h", "--status", "done", "--json", config=config_path) == []
    assert "REJECTED" in ichvol("report", study_uid, config=config_path)
    # Resubmit queues a new run regardless of routing.
    assert "run 2" in ichvol("resubmit", study_uid, config=config_path)
    runs = ichvol("report", study_uid, "--json", config=config_path)[0]["jobs"]
    assert [(j["run"], j["state"]) for j in runs] == [(1, "REJECTED"), (2, "QUEUED")]
    with sessions() as s:  # the rejected association is audited (it has no study)
        rejected_aes = [e.details["calling_ae"] for e in
                        s.scalars(select(AuditEvent).where(AuditEvent.event == "association_rejected"))]
    assert rejected_aes == ["STRANGER"]


@pytest.mark.parametrize(("args", "message"), [
    (["report", "1.2.3"], "no study"), (["report", "--since", "soon"], "--since"), (["report"], "give either"),
    (["report", "--since", "1h", "--status", "lost"], "--status"), (["resubmit", "42"], "no study"),
])
def test_report_and_resubmit_errors_are_typed(tmp_path, args, message):
    config_path = tmp_path / "ichvol.toml"
    config_path.write_text(f'data_dir = "{tmp_path / "var"}"\n')
    with pytest.raises(IchvolError, match=message):
        ichvol(*args, config=config_path)
