"""Automatic PACS routing end to end: a study uploaded to a real Orthanc is routed by deploy/orthanc's Lua
script to `ichvol serve`, and ichvol's SEG + SR land back in the same Orthanc study, once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from peers import (
    IchvolService,
    Orthanc,
    ServiceDatabase,
    fast_service_sections,
    free_port,
    ichvol_config,
    ichvol_report,
    require,
    synth_study,
    wait_until,
    write_service_config,
)

from ichvol.models import default_model_path

pytestmark = pytest.mark.slow
DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_study_uploaded_to_orthanc_gets_seg_and_sr_back_in_the_same_study(tmp_path, tmp_path_factory):
    require("Orthanc")
    files, study_uid = synth_study(tmp_path_factory.getbasetemp())
    model = default_model_path()  # the model shipped with ichvol, as in production
    if not (model / "config.json").is_file():
        pytest.skip(f"no shipped model at {model} yet")

    listen_port = free_port()
    orthanc = Orthanc(tmp_path, modalities={"ichvol": ("ICHVOL", "127.0.0.1", listen_port)},
                      lua_scripts=[DEPLOY / "orthanc" / "route-to-ichvol.lua"], stable_age=1, ae_title="PACS",
                      base_config=DEPLOY / "orthanc" / "orthanc.json")
    config = ichvol_config(tmp_path / "var", listen_port, [("PACS", "127.0.0.1", orthanc.dicom_port)],
                           allowed_calling_aets=["PACS"], stable_seconds=1, **fast_service_sections(model))
    config["worker"]["torch_threads"] = 2
    config_path = write_service_config(tmp_path / "ichvol.toml", config)
    db = ServiceDatabase(config["database"]["url"])

    with IchvolService(tmp_path, config_path, "serve", listen_port=listen_port) as serve, orthanc:
        answers = orthanc.upload(files)
        assert {a["Status"] for a in answers} == {"Success"}
        study_id = answers[0]["ParentStudy"]
        ct_series_before = {s["ID"] for s in orthanc.series_of_study(study_id)
                            if s["MainDicomTags"]["Modality"] == "CT"}

        def results_in_orthanc() -> list[dict] | None:
            series = orthanc.series_of_study(study_id)
            modalities = {s["MainDicomTags"]["Modality"] for s in series}
            jobs = db.jobs(study_uid)
            done = bool(jobs) and jobs[0].sent_at is not None
            return series if done and "SR" in modalities else None

        series = wait_until(results_in_orthanc, 120, "ichvol's results in the Orthanc study",
                            interval=0.5, peers=[serve, orthanc])
        # The study became stable again with ichvol's results in it: the router must not send it again.
        wait_until(lambda: orthanc.get(f"/studies/{study_id}")["IsStable"], 30, "the study to be stable again",
                   peers=[orthanc])
        time.sleep(2)
        assert len(db.jobs(study_uid)) == 1, "ichvol's own results were routed back to ichvol"
        series = orthanc.series_of_study(study_id)
        assert len(orthanc.get("/studies")) == 1  # nothing landed in a new study
        result_tags = {s["MainDicomTags"]["Modality"]: orthanc.get(f"/instances/{s['Instances'][0]}/simplified-tags")
                       for s in series if s["ID"] not in ct_series_before and len(s["Instances"]) == 1}
        (report,) = ichvol_report(config_path, study_uid)
    db.close()

    (job,) = report["jobs"]
    assert job["state"] == "DONE"
    # Every CT series Orthanc held was routed to ichvol, instance for instance.
    ct_instances = sum(len(s["Instances"]) for s in series if s["ID"] in ct_series_before)
    assert job["instances"] == ct_instances
    # Exactly the job's objects are in Orthanc, as new series of the same study, once each.
    results = {s["MainDicomTags"]["Modality"]: s for s in series if s["ID"] not in ct_series_before}
    expected = {s["object"]: s["sop_instance_uid"] for s in job["sends"]}
    assert set(results) == set(expected) and "SR" in expected
    for modality, s in results.items():
        assert len(s["Instances"]) == 1, f"{modality} stored {len(s['Instances'])} times"
        tags = result_tags[modality]
        assert tags["StudyInstanceUID"] == study_uid
        assert tags["SOPInstanceUID"] == expected[modality]
        assert tags["SeriesInstanceUID"] == job["uids"][f"{modality.lower()}_series"]
    assert result_tags["SR"]["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert all(s["state"] == "SENT" and s["destination"].startswith("PACS@") for s in job["sends"])
