"""deploy/orthanc: Orthanc's Lua script routes stable CT studies to ichvol, and never routes ichvol's own
results back (no loop). Here a DCMTK storescp stands in for ichvol's listener, so the routing is checked
on its own; tests/test_e2e_orthanc.py runs the whole loop with `ichvol serve`."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest
from peers import Orthanc, StoreSCP, free_port, require, wait_until, write_ct_series
from pydicom.uid import generate_uid

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "orthanc"
STABLE_AGE = 1


@pytest.fixture
def routed(tmp_path):
    require("Orthanc")
    require("storescp")
    with StoreSCP(tmp_path / "ichvol", ae_title="ICHVOL") as receiver:
        orthanc = Orthanc(tmp_path, modalities={"ichvol": ("ICHVOL", "127.0.0.1", receiver.port)},
                          lua_scripts=[DEPLOY / "route-to-ichvol.lua"], stable_age=STABLE_AGE,
                          base_config=DEPLOY / "orthanc.json")
        with orthanc:
            yield orthanc, receiver


def _sop_uids(receiver: StoreSCP) -> list[str]:
    return [ds.SOPInstanceUID for ds in receiver.received()]


def _result_object(study_uid: str, path: Path) -> Path:
    """An SR in the study, like ichvol's result: only its modality and study matter to the router."""
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality, ds.Manufacturer = "PEERS-TEST", "Peers^Test", "SR", "ichvol"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_stable_ct_study_is_routed_once_and_results_do_not_loop(routed, tmp_path):
    orthanc, receiver = routed
    study_uid = generate_uid()
    ct = write_ct_series(tmp_path / "ct", slices=3, study_uid=study_uid)
    orthanc.upload(ct)

    wait_until(lambda: len(receiver.received_files()) >= 3, 30, "the CT series at the stand-in ichvol",
               peers=[orthanc, receiver])
    assert sorted(_sop_uids(receiver)) == sorted(pydicom.dcmread(p).SOPInstanceUID for p in ct)
    study_id = orthanc.study_id(study_uid)
    assert study_id is not None

    # ichvol's SR lands in the same study: the study becomes stable again, nothing is routed again.
    orthanc.upload([_result_object(study_uid, tmp_path / "sr.dcm")])
    wait_until(lambda: orthanc.get(f"/studies/{study_id}")["IsStable"], 30, "the study to be stable again",
               peers=[orthanc])
    time.sleep(1)
    assert len(receiver.received_files()) == 3, "ichvol's own result re-triggered routing"
    assert "no CT series left to send" in orthanc.log_text()

    # A late CT image of the same study is new work: the CT series is sent again (with the new image).
    late = write_ct_series(tmp_path / "late", slices=4, study_uid=study_uid)
    # Same series: reuse the series UID of the first upload so the series gains an instance.
    ds = pydicom.dcmread(late[3])
    ds.SeriesInstanceUID = pydicom.dcmread(ct[0]).SeriesInstanceUID
    ds.save_as(late[3])
    orthanc.upload([late[3]])
    wait_until(lambda: len(receiver.received_files()) >= 7, 30, "the grown CT series to be routed again",
               peers=[orthanc, receiver])


def test_study_without_ct_is_not_routed(routed, tmp_path):
    orthanc, receiver = routed
    study_uid = generate_uid()
    mr = write_ct_series(tmp_path / "mr", slices=2, study_uid=study_uid, modality="MR")
    orthanc.upload(mr)
    study_id = orthanc.study_id(study_uid)
    wait_until(lambda: orthanc.get(f"/studies/{study_id}")["IsStable"], 30, "the study to be stable",
               peers=[orthanc])
    wait_until(lambda: "no CT series left to send" in orthanc.log_text(), 10, "the Lua script to run",
               peers=[orthanc])
    assert receiver.received_files() == []


def test_study_not_delivered_while_ichvol_is_down_is_sent_later(tmp_path):
    require("Orthanc")
    require("storescp")
    ichvol_port = free_port()  # nothing listens there yet
    orthanc = Orthanc(tmp_path, modalities={"ichvol": ("ICHVOL", "127.0.0.1", ichvol_port)},
                      lua_scripts=[DEPLOY / "route-to-ichvol.lua"], stable_age=STABLE_AGE,
                      base_config=DEPLOY / "orthanc.json")
    with orthanc:
        first = write_ct_series(tmp_path / "first", slices=2)
        orthanc.upload(first)
        wait_until(lambda: "failed, will try again" in orthanc.log_text(), 30, "the failed send",
                   peers=[orthanc])
        with StoreSCP(tmp_path / "ichvol", ae_title="ICHVOL", port=ichvol_port) as receiver:
            orthanc.upload(write_ct_series(tmp_path / "second", slices=3))  # the next stable study
            wait_until(lambda: len(receiver.received_files()) >= 5, 30, "both studies at ichvol",
                       peers=[orthanc, receiver])
            studies = {ds.StudyInstanceUID for ds in receiver.received()}
    assert pydicom.dcmread(first[0]).StudyInstanceUID in studies and len(studies) == 2
