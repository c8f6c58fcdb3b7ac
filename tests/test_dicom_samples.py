"""Real-world samples from pydicom's test data (pydicom / pydicom-data, no download): compressed transfer
syntaxes, an enhanced CT, and the error when a decoder is missing or the syntax is unsupported (B)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import MPEG2MPML, CTImageStorage, generate_uid

from ichvol.dicom import load_ct_image
from ichvol.errors import PixelDataError


def sample(name: str) -> Path:
    try:
        path = get_testdata_file(name, download=False)
    except Exception:  # pydicom raises different kinds when the external data store is absent
        path = None
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed locally (pip install pydicom-data)")
    return Path(path)


def series_from_one_file(source: Path, folder: Path, slices: int = 3) -> Path:
    """A short stack made of one real (possibly compressed) image: same pixel data at several positions."""
    folder.mkdir(parents=True)
    series_uid = generate_uid()
    for i in range(slices):
        ds = pydicom.dcmread(source)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [0.0, 0.0, 3.0 * i]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.InstanceNumber = i + 1
        ds.save_as(folder / f"{i}.dcm")
    return folder


def ct_stack_from_one_file(source: Path, folder: Path) -> Path:
    """series_from_one_file, labelled CT Image Storage with a CT rescale, for samples of other modalities."""
    series_from_one_file(source, folder)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.Modality, ds.RescaleSlope, ds.RescaleIntercept = "CT", 1, -1024
        ds.save_as(path)
    return folder


def test_ct_small_reads_with_rescale(tmp_path):
    path = sample("CT_small.dcm")
    reference = pydicom.dcmread(path)
    image, _ = load_ct_image(series_from_one_file(path, tmp_path / "s"), min_slices=2)
    expected = reference.pixel_array * float(reference.RescaleSlope) + float(reference.RescaleIntercept)
    np.testing.assert_array_equal(image.hu[1], expected)
    assert image.geometry.slice_spacing == pytest.approx(3.0)


def test_jpeg2000_lossless_decodes_to_the_uncompressed_pixels(tmp_path):
    compressed, _ = load_ct_image(series_from_one_file(sample("693_J2KR.dcm"), tmp_path / "j"), min_slices=2)
    plain, _ = load_ct_image(series_from_one_file(sample("693_UNCR.dcm"), tmp_path / "u"), min_slices=2)
    np.testing.assert_array_equal(compressed.hu, plain.hu)
    assert compressed.hu.std() > 100  # a real image, not a blank


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the sample's anonymised UIDs
def test_jpeg_lossless_process14_decodes(tmp_path):
    path = sample("bad_sequence.dcm")  # a real CT, JPEG Lossless SV1
    image, _ = load_ct_image(series_from_one_file(path, tmp_path / "s"), min_slices=2)
    assert image.hu.shape == (3, 512, 512) and image.hu.std() > 100


def test_jpeg_extended_12bit_refused_by_pylibjpeg_is_decoded_by_dcmtk(tmp_path):
    """JPEG-lossy.dcm: a real 12-bit JPEG Extended image with a scan header pylibjpeg refuses; DCMTK's
    dcmdjpeg decodes it. JPGExtended.dcm holds the same image encoded correctly, which pylibjpeg decodes:
    the two agree to within 1 (rounding in the lossy decoders)."""
    refused = sample("JPEG-lossy.dcm")
    with pytest.raises(Exception, match="scan start must be zero"):
        pydicom.dcmread(refused).pixel_array  # noqa: B018 - the decode is what is tested
    image, _ = load_ct_image(ct_stack_from_one_file(refused, tmp_path / "s"), min_slices=2)
    reference = pydicom.dcmread(sample("JPGExtended.dcm")).pixel_array.astype(int) - 1024
    assert np.abs(image.hu[1].astype(int) - reference).max() <= 1
    assert image.hu.std() > 10  # a real image, not a blank


def test_without_dcmtk_the_refused_jpeg_is_a_pixel_data_error(tmp_path, monkeypatch):
    folder = ct_stack_from_one_file(sample("JPEG-lossy.dcm"), tmp_path / "s")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(PixelDataError, match=r"JPEG Extended \(Process 2 and 4\) cannot be decoded"):
        load_ct_image(folder, min_slices=2)


def test_real_enhanced_ct_sample():
    path = sample("eCT_Supplemental.dcm")
    image, _ = load_ct_image(path, min_slices=2)
    assert image.hu.shape == (2, 512, 512)
    assert image.frame_numbers == (2, 1)  # frame 2 lies lower along the slice normal
    assert image.geometry.slice_gaps() == pytest.approx([10.0])


def test_unsupported_transfer_syntax_names_it(tmp_path):
    folder = series_from_one_file(sample("CT_small.dcm"), tmp_path / "s")
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = MPEG2MPML
        ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])
        ds["PixelData"].VR = "OB"
        ds.save_as(path, enforce_file_format=True)
    expected = r"MPEG2 Main Profile / Main Level \(1\.2\.840\.10008\.1\.2\.4\.100\) is not supported"
    with pytest.raises(PixelDataError, match=expected):
        load_ct_image(folder, min_slices=2)


def test_missing_decoder_says_what_to_install(tmp_path):
    """Runs in a fresh interpreter where the JPEG 2000 decoders cannot be imported (as without the extra)."""
    folder = series_from_one_file(sample("693_J2KR.dcm"), tmp_path / "s")
    script = (
        "import sys\n"
        "for name in ('openjpeg', 'pylibjpeg', 'libjpeg', 'PIL', 'gdcm'):\n"
        "    sys.modules[name] = None\n"
        "from ichvol.dicom import load_ct_image\n"
        "from ichvol.errors import PixelDataError\n"
        "try:\n"
        f"    load_ct_image({str(folder)!r}, min_slices=2)\n"
        "except PixelDataError as exc:\n"
        "    print('ERROR', exc)\n"
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ERROR" in result.stdout
    assert "JPEG 2000 Image Compression (Lossless Only)" in result.stdout
    assert "pip install 'ichvol[jpeg]'" in result.stdout
