"""A DICOM SEG read back into a hemorrhage label map on the CT series it was made on.

The counterpart of writer.py, for annotations that come as a DICOM study plus a SEG (from ichvol or from other
tools). The SEG's frames are matched to the CT slices by the SOP Instance UIDs (and, for an enhanced multi-frame
CT, the frame numbers) they were derived from, so a tilted (sheared) stack or uneven gaps need no resampling.

Each segment is given a hemorrhage type, in this order:
1. its SegmentedPropertyType code, when it is one of the type-specific disorder codes ichvol writes in its SR
   (ichvol.sr.codes.DISORDER: SCT 274100004 Cerebral hemorrhage -> IPH, 274110009 -> IVH, 21454007 -> SAH,
   35486000 -> SDH, 99ICHVOL EDH -> EDH);
2. its segment label, then the property type's code meaning, as text: "IPH", "Intraparenchymal hemorrhage",
   "intracerebral", "IVH"/"intraventricular", "SAH"/"subarachnoid", "SDH"/"subdural",
   "EDH"/"epidural"/"extradural" (ichvol's own SEGs carry the generic Hemorrhage code and the type as label);
3. a segment that names hemorrhage only generically (code SCT 50960005 Hemorrhage or SCT 1386000 Intracranial
   hemorrhage, or a label such as "Hemorrhage", "Haemorrhage", "Hematoma", "Bleed", "ICH") becomes
   `generic_type`, IPH unless the caller says otherwise;
anything else is an InputError naming the segment.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.coding import Code

from ..errors import InputError
from ..image import CTImage
from ..labels import Hemorrhage
from ..sr import codes

logger = logging.getLogger(__name__)

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
GENERIC_HEMORRHAGE_TYPE = Hemorrhage.IPH  # the type of a segment that says "hemorrhage" and nothing more

_GENERIC_CODES = (codes.HEMORRHAGE, codes.INTRACRANIAL_HEMORRHAGE)
_TYPE_WORDS = {
    Hemorrhage.IPH: {"iph", "intraparenchymal", "parenchymal", "intracerebral"},
    Hemorrhage.IVH: {"ivh", "intraventricular"},
    Hemorrhage.SAH: {"sah", "subarachnoid"},
    Hemorrhage.SDH: {"sdh", "subdural"},
    Hemorrhage.EDH: {"edh", "epidural", "extradural"},
}
_GENERIC_WORDS = {"hemorrhage", "haemorrhage", "hemorrhages", "haemorrhages", "hematoma", "haematoma",
                  "bleed", "bleeding", "ich"}


def read_segmentation(
    source: Path | str | Dataset, image: CTImage, generic_type: Hemorrhage = GENERIC_HEMORRHAGE_TYPE
) -> np.ndarray:
    """The SEG `source` (a file or a dataset) as a uint8 (slices, rows, columns) label map on `image`, the CT
    series it references (loaded with ichvol.dicom.load_ct_image): 0 background, else a Hemorrhage value.

    A segment naming hemorrhage only generically becomes `generic_type` (IPH by default; see the module
    docstring for how segments get their type). InputError when the SEG is not one, references another study
    or series, has frames derived from images that are not slices of `image`, has a segment of unknown type,
    or has two types in one voxel (a label map holds one type per voxel).
    """
    seg, name = _open(source)
    if not image.datasets:
        raise InputError(f"{name}: a SEG is matched to the CT's DICOM slices; this image has no DICOM headers")
    _check_references(seg, image, name)
    rows, columns = image.hu.shape[1:]
    if (int(seg.Rows), int(seg.Columns)) != (rows, columns):
        raise InputError(f"{name}: frames of {seg.Rows} x {seg.Columns} pixels on a CT of {rows} x {columns}")
    _check_frame_sources(seg, image, name)
    labels = np.zeros(image.hu.shape, dtype=np.uint8)
    for number, hemorrhage in segment_types(seg, generic_type, name).items():
        mask = _segment_mask(seg, image, number, name)
        clash = mask & (labels != 0) & (labels != hemorrhage)
        if clash.any():
            others = ", ".join(Hemorrhage(v).name for v in np.unique(labels[clash]))
            raise InputError(f"{name}: segment {number} ({hemorrhage.name}) overlaps {others} in "
                             f"{int(clash.sum())} voxels; a label map holds one type per voxel")
        labels[mask] = hemorrhage
    logger.info("%s: %s", name, ", ".join(f"{h.name} {int(np.count_nonzero(labels == h))} voxels"
                                          for h in Hemorrhage if np.any(labels == h)) or "no labelled voxel")
    return labels


def segment_types(
    seg: hd.seg.Segmentation, generic_type: Hemorrhage = GENERIC_HEMORRHAGE_TYPE, name: str = "SEG"
) -> dict[int, Hemorrhage]:
    """The hemorrhage type of each segment number (InputError naming the first segment of unknown type)."""
    types = {}
    for number in seg.segment_numbers:
        description = seg.get_segment_description(number)
        label = str(description.segment_label or "")
        code = description.segmented_property_type
        try:
            hemorrhage = segment_type(
                label, Code(str(code.value), str(code.scheme_designator), str(code.meaning)), generic_type)
        except ValueError as exc:
            raise InputError(f"{name}: segment {number} '{label}': {exc}") from exc
        if hemorrhage is None:
            raise InputError(
                f"{name}: segment {number} '{label}' ({code.scheme_designator} {code.value} {code.meaning}) is "
                f"not a hemorrhage type ichvol knows ({', '.join(h.name for h in Hemorrhage)}, or generic "
                "hemorrhage)"
            )
        types[number] = hemorrhage
    return types


def read_segment_types(source: Path | str | Dataset, generic_type: Hemorrhage = GENERIC_HEMORRHAGE_TYPE
                       ) -> dict[int, Hemorrhage]:
    """The hemorrhage type of each segment of the SEG `source` (a file or dataset), without its CT."""
    seg, name = _open(source)
    return segment_types(seg, generic_type, name)


def segment_type(label: str, code: Code, generic_type: Hemorrhage = GENERIC_HEMORRHAGE_TYPE) -> Hemorrhage | None:
    """A segment's type from its property type code and label (None when neither names hemorrhage;
    ValueError when the text names two types)."""
    for hemorrhage, known in codes.DISORDER.items():
        if code == known:  # pydicom's Code equality also maps legacy SRT codes to SCT
            return hemorrhage
    for text in (label, code.meaning):
        hemorrhage = _type_from_text(text)
        if hemorrhage is not None:
            return hemorrhage
    if any(code == generic for generic in _GENERIC_CODES) or _GENERIC_WORDS & _words(label):
        return generic_type
    return None


def find_segmentation(folder: Path) -> tuple[Path, str]:
    """The one SEG file under `folder` (a DICOM study, any file names, sub-folders allowed) and the CT series
    it is to be read on: the CT series the SEG references (when it references several that are in the folder,
    the one ichvol's series selection ranks first; when it references none, the one ichvol selects).

    InputError naming the folder when it holds no SEG, several, or a SEG whose CT series is not there.
    """
    from ..dicom import read_study, select_series  # the DICOM reader pulls in decoders: import it when needed
    from ..dicom.scan import series_uid_of
    from ..dicom.selection import CT_IMAGE_CLASSES

    folder = Path(folder)
    scan = read_study(folder)
    segs = [i for s in scan.series.values() for i in s.instances if str(i.header.SOPClassUID) == SEGMENTATION_STORAGE]
    if not segs:
        raise InputError(f"{folder}: no DICOM SEG with the labels (expected one next to the CT series)")
    if len(segs) > 1:
        names = ", ".join(sorted(str(i.path.relative_to(folder)) for i in segs))
        raise InputError(f"{folder}: {len(segs)} DICOM SEG instances ({names}); expected one")
    seg = segs[0]
    referenced = [str(item.SeriesInstanceUID) for item in seg.header.get("ReferencedSeriesSequence", [])]
    if not referenced:
        return seg.path, select_series(scan).series.uid
    present = [uid for uid in referenced if uid in scan.series and scan.series[uid].sop_class_uid in CT_IMAGE_CLASSES]
    # A referenced series that mixes stacks is read on its best part (ichvol.dicom.load_ct_image decides).
    if not present:
        raise InputError(f"{folder}: the SEG {seg.path.relative_to(folder)} references CT series "
                         f"{', '.join(referenced)}, which is not in the folder")
    if len(present) > 1:
        ranked = [series_uid_of(key) for key in select_series(scan, min_slices=2).candidates]
        ranked = [uid for uid in dict.fromkeys(ranked) if uid in present]
        present = ranked or present
    return seg.path, present[0]


def _open(source: Path | str | Dataset) -> tuple[hd.seg.Segmentation, str]:
    if isinstance(source, Dataset):
        name = f"SEG {source.get('SOPInstanceUID', '')}".strip()
        if str(source.get("SOPClassUID", "")) != SEGMENTATION_STORAGE:
            raise InputError(f"{name}: not a DICOM Segmentation")
        dataset = source if isinstance(source, hd.seg.Segmentation) else hd.seg.Segmentation.from_dataset(source)
        return dataset, name
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{path}: no such file (expected a DICOM SEG)")
    try:
        return hd.seg.segread(path), str(path)
    except Exception as exc:  # pydicom and highdicom raise many kinds on a file that is not a readable SEG
        raise InputError(f"{path}: not a readable DICOM SEG ({type(exc).__name__}: {exc})") from exc


def _check_references(seg: hd.seg.Segmentation, image: CTImage, name: str) -> None:
    if str(seg.StudyInstanceUID) != image.study_instance_uid:
        raise InputError(f"{name}: the SEG belongs to study {seg.StudyInstanceUID}, the CT to study "
                         f"{image.study_instance_uid}")
    referenced = {str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])}
    if referenced and image.series_instance_uid not in referenced:
        raise InputError(f"{name}: the SEG references series {', '.join(sorted(referenced))}, not the CT series "
                         f"{image.series_instance_uid}")


def _check_frame_sources(seg: hd.seg.Segmentation, image: CTImage, name: str) -> None:
    """InputError unless every SEG frame is derived from a slice of `image` with its pixels where the slice's
    are (SpatialLocationsPreserved YES or absent: the frame size is the CT's; an explicit NO is refused)."""
    if image.frame_numbers:
        enhanced_uid = str(image.datasets[0].SOPInstanceUID)
        in_volume = {(enhanced_uid, n) for n in image.frame_numbers}
    else:
        in_volume = {(str(ds.SOPInstanceUID), None) for ds in image.datasets}
    shared = seg.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in seg else Dataset()
    unmatched = []
    for number, item in enumerate(seg.get("PerFrameFunctionalGroupsSequence", []), start=1):
        derivations = item.get("DerivationImageSequence") or shared.get("DerivationImageSequence") or []
        sources = [source for derivation in derivations for source in derivation.get("SourceImageSequence", [])]
        if not sources:
            raise InputError(f"{name}: frame {number} does not name the CT image it was derived from "
                             "(no DerivationImageSequence), so it cannot be placed on a slice")
        if any(str(s.get("SpatialLocationsPreserved", "YES")).upper() == "NO" for s in sources):
            raise InputError(f"{name}: frame {number} says its pixels are not where the CT's are "
                             "(SpatialLocationsPreserved NO)")
        keys = set()
        for source in sources:
            uid = str(source.ReferencedSOPInstanceUID)
            frames = source.get("ReferencedFrameNumber")
            if image.frame_numbers:
                keys |= {(uid, int(f)) for f in ([frames] if isinstance(frames, int | str) else frames or [])}
            else:
                keys.add((uid, None))
        if not keys & in_volume:
            unmatched.append(number)
    if unmatched:
        raise InputError(f"{name}: {len(unmatched)} frame(s) (first: frame {unmatched[0]}) are derived from images "
                         f"that are not slices of the CT series {image.series_instance_uid}")


def _segment_mask(seg: hd.seg.Segmentation, image: CTImage, number: int, name: str) -> np.ndarray:
    # Slices no frame refers to are empty; spatial locations were checked by _check_frame_sources.
    options = {"segment_numbers": [number], "assert_missing_frames_are_empty": True,
               "ignore_spatial_locations": True}
    try:
        if image.frame_numbers:
            pixels = seg.get_pixels_by_source_frame(str(image.datasets[0].SOPInstanceUID),
                                                    source_frame_numbers=list(image.frame_numbers), **options)
        else:
            pixels = seg.get_pixels_by_source_instance([str(ds.SOPInstanceUID) for ds in image.datasets],
                                                       **options)
    except (ValueError, KeyError, RuntimeError, IndexError) as exc:
        raise InputError(f"{name}: segment {number} cannot be placed on the CT slices ({exc})") from exc
    # BINARY gives 0/1; FRACTIONAL is rescaled to 0..1 and counts where it is at least one half.
    return np.asarray(pixels[..., 0]) >= 0.5


def _words(text: str) -> set[str]:
    """Lower-case words, hyphenated ones also joined ("intra-ventricular" gives intra, ventricular and
    intraventricular)."""
    text = text.lower()
    return set(re.findall(r"[a-z]+", text)) | set(re.findall(r"[a-z]+", re.sub(r"(?<=[a-z])-(?=[a-z])", "", text)))


def _type_from_text(text: str) -> Hemorrhage | None:
    words = _words(text)
    found = [h for h, names in _TYPE_WORDS.items() if names & words]
    if len(found) > 1:
        raise ValueError(f"'{text}' names {' and '.join(h.name for h in found)}; one type per segment")
    return found[0] if found else None
