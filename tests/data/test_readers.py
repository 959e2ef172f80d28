"""Dataset readers on tiny layouts written into tmp_path (readers never decode pixels: a few bytes per image)."""

import csv
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from tests.conftest import SHARED_CXR
from training.data.readers import (
    detect,
    ieee8023_label,
    read,
    read_folders,
    read_ieee8023,
    read_manifest,
    read_rsna,
)

SHARED_MANIFEST = SHARED_CXR / "manifest.csv"


def write_csv(path: Path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG not decoded")
    return path


def write_dicom(path: Path, view: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.ViewPosition = view
    ds.Rows, ds.Columns = 2, 2
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes(4)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def reasons(reading) -> dict:
    return {Path(s.file).name: s.reason for s in reading.skipped}


# --- manifest -----------------------------------------------------------------------------------------------


def test_manifest(tmp_path):
    for name in ("a.png", "b.png", "c.png", "d.png"):
        touch(tmp_path / "images" / name)
    write_csv(
        tmp_path / "manifest.csv",
        ["file", "label", "patient_id", "source", "view", "license"],
        [
            ["images/a.png", "COVID-19", "x_1", "x", "PA", "CC BY"],
            ["images/b.png", "Normal", "x_2", "x", "AP", ""],
            ["images/c.png", "covid", "x_3", "x", "PA", ""],  # labels must match CLASSES exactly
            ["images/d.png", "Pneumonia", "", "x", "PA", ""],
            ["images/missing.png", "Normal", "x_4", "x", "PA", ""],
            ["images/a.png", "COVID-19", "x_1", "x", "PA", "CC BY"],  # the same row again
        ],
    )
    reading = read_manifest(tmp_path)  # the folder is enough
    got = [(r.label, r.patient_id, r.view) for r in reading.records]
    assert got == [("COVID-19", "x_1", "PA"), ("Normal", "x_2", "AP")]
    assert reading.records[0].file == str((tmp_path / "images" / "a.png").resolve())
    assert reading.records[0].extra == {"license": "CC BY"}
    why = reasons(reading)
    assert "label 'covid' is not one of COVID-19, Normal, Pneumonia" in why["c.png"]
    assert "patient_id is empty" in why["d.png"]
    assert why["missing.png"] == "file not found"
    assert why["a.png"] == "listed more than once (line 7 repeats line 2)"
    assert len(reading.skipped) == 4


def test_manifest_conflicting_repeats_are_all_left_out(tmp_path):
    touch(tmp_path / "a.png")
    header = ["file", "label", "patient_id", "source", "view"]
    write_csv(tmp_path / "m.csv", header, [["a.png", "Normal", "p", "s", ""], ["a.png", "Pneumonia", "p", "s", ""]])
    reading = read_manifest(tmp_path / "m.csv")
    assert reading.records == []
    reason = "listed 2 times with different labels or patient ids (line 2, line 3)"
    assert [s.reason for s in reading.skipped] == [reason, reason]


def test_manifest_missing_column(tmp_path):
    write_csv(tmp_path / "manifest.csv", ["file", "label", "source", "view"], [])
    with pytest.raises(ValueError, match=r"manifest\.csv.*'patient_id'"):
        read_manifest(tmp_path / "manifest.csv")


def test_shared_manifest():
    if not SHARED_MANIFEST.exists():
        pytest.skip("shared real data not present")
    reading = read_manifest(SHARED_MANIFEST)
    assert len(reading.records) == 611
    assert reading.skipped == []
    assert len({r.patient_id for r in reading.records}) == 515


# --- ieee8023 -----------------------------------------------------------------------------------------------

IEEE_HEADER = ["patientid", "offset", "finding", "view", "modality", "folder", "filename", "license"]
# (patientid, old finding, new finding, view, modality, filename)
IEEE_ROWS = [
    ("1", "COVID-19", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "covid.jpg"),
    ("2", "COVID-19, ARDS", "Pneumonia/Viral/COVID-19", "AP Supine", "X-ray", "covid-ards.jpg"),
    ("3", "SARS", "Pneumonia/Viral/SARS", "AP", "X-ray", "sars.jpg"),
    ("4", "Streptococcus", "Pneumonia/Bacterial/Streptococcus", "AP erect", "X-ray", "strep.png"),
    ("5", "Pneumocystis", "Pneumonia/Fungal/Pneumocystis", "AP semi erect", "X-ray", "pcp.png"),
    ("6", "No Finding", "No Finding", "PA", "X-ray", "normal.png"),
    ("1", "COVID-19", "Pneumonia/Viral/COVID-19", "L", "X-ray", "covid-lateral.jpg"),
    ("7", "COVID-19", "Pneumonia/Viral/COVID-19", "Axial", "CT", "ct.jpg"),
    ("8", "ARDS", "ARDS", "PA", "X-ray", "ards.jpg"),
    ("9", "Lipoid", "Pneumonia/Lipoid", "PA", "X-ray", "lipoid.jpg"),
    ("10", "todo", "todo", "PA", "X-ray", "todo.jpg"),
    ("11", "COVID-19", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "missing.jpg"),
]


def write_ieee8023(root: Path, vocabulary: str) -> Path:
    finding = 1 if vocabulary == "old" else 2
    rows = [[r[0], "0", r[finding], r[3], r[4], "images", r[5], "CC BY"] for r in IEEE_ROWS]
    write_csv(root / "metadata.csv", IEEE_HEADER, rows)
    for r in IEEE_ROWS:
        if r[5] != "missing.jpg":
            touch(root / "images" / r[5])
    return root


@pytest.mark.parametrize("vocabulary", ["old", "new"])
def test_ieee8023(tmp_path, vocabulary):
    reading = read_ieee8023(write_ieee8023(tmp_path, vocabulary))
    got = {Path(r.file).name: (r.label, r.patient_id, r.view) for r in reading.records}
    assert got == {
        "covid.jpg": ("COVID-19", "ieee8023_1", "PA"),
        "covid-ards.jpg": ("COVID-19", "ieee8023_2", "AP Supine"),
        "sars.jpg": ("Pneumonia", "ieee8023_3", "AP"),
        "strep.png": ("Pneumonia", "ieee8023_4", "AP erect"),
        "pcp.png": ("Pneumonia", "ieee8023_5", "AP semi erect"),
        "normal.png": ("Normal", "ieee8023_6", "PA"),
    }
    assert {r.source for r in reading.records} == {"ieee8023"}
    why = reasons(reading)
    assert why["covid-lateral.jpg"].startswith("view 'L' is not frontal")
    assert why["ct.jpg"] == "modality 'CT' is not X-ray"
    assert why["ards.jpg"].startswith("finding 'ARDS' is not mapped")
    assert "is not mapped" in why["lipoid.jpg"] and "is not mapped" in why["todo.jpg"]
    assert why["missing.jpg"] == "file not found"
    assert len(reading.skipped) == 6


@pytest.mark.parametrize(
    "finding, label",
    [
        ("Pneumonia/Viral/Influenza/H1N1", "Pneumonia"),
        ("Pneumonia/Bacterial/Staphylococcus/MRSA", "Pneumonia"),
        ("Pneumonia/Viral/Herpes ", "Pneumonia"),
        ("Pneumonia/Aspiration", "Pneumonia"),
        ("Pneumonia/Bacterial/Some New Bug", "Pneumonia"),  # any other Pneumonia/... is a pneumonia
        ("Pneumonia", "Pneumonia"),
        ("no finding", "Normal"),
        ("Pneumonia/Lipoid", None),
        ("Tuberculosis", None),
        ("Unknown", None),
        ("", None),
    ],
)
def test_ieee8023_label(finding, label):
    assert ieee8023_label(finding) == label


# --- RSNA ---------------------------------------------------------------------------------------------------


def write_rsna(root: Path, stage: str = "stage_2") -> Path:
    labels = [  # patientId, x, y, width, height, Target: one row per box
        ["normal1", "", "", "", "", "0"],
        ["opacity1", "10", "10", "5", "5", "1"],
        ["opacity1", "30", "10", "5", "5", "1"],
        ["notnormal1", "", "", "", "", "0"],
        ["disagree1", "", "", "", "", "1"],
        ["conflict1", "10", "10", "5", "5", "1"],
        ["conflict1", "30", "10", "5", "5", "1"],
        ["missing1", "", "", "", "", "0"],
    ]
    classes = [
        ["normal1", "Normal"],
        ["opacity1", "Lung Opacity"],
        ["opacity1", "Lung Opacity"],
        ["notnormal1", "No Lung Opacity / Not Normal"],
        ["disagree1", "Normal"],
        ["conflict1", "Lung Opacity"],
        ["conflict1", "Normal"],
        ["missing1", "Normal"],
    ]
    write_csv(root / f"{stage}_train_labels.csv", ["patientId", "x", "y", "width", "height", "Target"], labels)
    write_csv(root / f"{stage}_detailed_class_info.csv", ["patientId", "class"], classes)
    views = {"normal1": "PA", "opacity1": "AP", "notnormal1": "PA", "disagree1": "PA", "conflict1": "AP"}
    for patient, view in views.items():
        write_dicom(root / f"{stage}_train_images" / f"{patient}.dcm", view)
    return root


def test_rsna(tmp_path):
    reading = read_rsna(write_rsna(tmp_path))
    got = {r.patient_id: (r.label, r.view, r.source) for r in reading.records}
    assert got == {"rsna_normal1": ("Normal", "PA", "rsna"), "rsna_opacity1": ("Pneumonia", "AP", "rsna")}
    why = reasons(reading)
    assert why.keys() == {"notnormal1.dcm", "disagree1.dcm", "conflict1.dcm", "missing1.dcm"}
    assert "excluded by default" in why["notnormal1.dcm"] and "--rsna-not-normal" in why["notnormal1.dcm"]
    assert why["disagree1.dcm"] == "class 'Normal' disagrees with Target 1"
    assert why["conflict1.dcm"].startswith("conflicting classes")
    assert why["missing1.dcm"] == "file not found"


def test_rsna_not_normal_included_and_stage_1(tmp_path):
    reading = read_rsna(write_rsna(tmp_path, "stage_1"), not_normal_label="Pneumonia")
    got = {r.patient_id: r.label for r in reading.records}
    assert got == {"rsna_normal1": "Normal", "rsna_opacity1": "Pneumonia", "rsna_notnormal1": "Pneumonia"}
    with pytest.raises(ValueError, match="not one of"):
        read_rsna(tmp_path, not_normal_label="Abnormal")


def test_rsna_unreadable_header_keeps_record(tmp_path):
    write_rsna(tmp_path)
    (tmp_path / "stage_2_train_images" / "normal1.dcm").write_bytes(b"not a DICOM file")
    reading = read_rsna(tmp_path)
    assert {r.patient_id: r.view for r in reading.records}["rsna_normal1"] == ""
    assert any("could not be read" in note for note in reading.notes)


# --- folders ------------------------------------------------------------------------------------------------


def test_folders_default_mapping(tmp_path):
    root = tmp_path / "kaggle"
    for rel in ("COVID-19/a.png", "No_Finding/b.JPG", "Viral Pneumonia/sub/c.jpeg", "Lung-Opacity/d.dicom",
                "NORMAL/e.png", "NORMAL/notes.txt", "NORMAL/.DS_Store", ".cache/x.png", "Tuberculosis/t.png",
                "readme.md"):
        touch(root / rel)
    reading = read_folders(root)
    got = {Path(r.file).name: (r.label, r.patient_id, r.source) for r in reading.records}
    assert got == {
        "a.png": ("COVID-19", "kaggle_COVID-19/a.png", "kaggle"),
        "b.JPG": ("Normal", "kaggle_No_Finding/b.JPG", "kaggle"),
        "c.jpeg": ("Pneumonia", "kaggle_Viral Pneumonia/sub/c.jpeg", "kaggle"),
        "d.dicom": ("Pneumonia", "kaggle_Lung-Opacity/d.dicom", "kaggle"),
        "e.png": ("Normal", "kaggle_NORMAL/e.png", "kaggle"),
    }
    assert reasons(reading) == {
        "notes.txt": "not a PNG, JPEG or DICOM file name",
        "t.png": "folder 'Tuberculosis' is not mapped to a class (use --class-map Tuberculosis=<class>)",
        "readme.md": "not inside a class folder",
    }
    assert any("every file is its own patient" in n and "leakage" in n for n in reading.notes)


def test_folders_class_map_and_patient_regex(tmp_path):
    for rel in ("tb/00000001_000.png", "tb/00000001_001.png", "Normal/00000002_000.png", "Normal/scan.png",
                "pneumonia/00000003_000.dcm"):
        touch(tmp_path / "nih" / rel)
    reading = read_folders(tmp_path / "nih", class_map={"TB": "Pneumonia", "pneumonia": ""}, patient_regex=r"^(\d{8})_")
    got = {Path(r.file).name: (r.label, r.patient_id) for r in reading.records}
    assert got == {
        "00000001_000.png": ("Pneumonia", "nih_00000001"),
        "00000001_001.png": ("Pneumonia", "nih_00000001"),
        "00000002_000.png": ("Normal", "nih_00000002"),
    }
    why = reasons(reading)
    assert "does not give a patient id" in why["scan.png"]
    assert why["00000003_000.dcm"] == "folder 'pneumonia' is left out by the class map"
    assert reading.notes == []
    with pytest.raises(ValueError, match="not one of"):
        read_folders(tmp_path / "nih", class_map={"tb": "Tuberculosis"})


@pytest.mark.parametrize("regex", [r"(?P<patient>person\d+)_", r"^(person\d+)", r"person\d+"])
def test_folders_patient_regex_groups(tmp_path, regex):
    touch(tmp_path / "x" / "Pneumonia" / "person12_virus_3.jpeg")
    (record,) = read_folders(tmp_path / "x", patient_regex=regex, source="kermany").records
    assert record.patient_id == "kermany_person12"


def test_folders_dicom_view(tmp_path):
    write_dicom(tmp_path / "d" / "Normal" / "a.dcm", "PA")
    assert [r.view for r in read_folders(tmp_path / "d").records] == ["PA"]


# --- detect and read ----------------------------------------------------------------------------------------


def test_detect_and_read(tmp_path):
    write_ieee8023(tmp_path / "ieee", "new")
    write_rsna(tmp_path / "rsna")
    touch(tmp_path / "folders" / "Normal" / "a.png")
    touch(tmp_path / "m" / "a.png")
    touch(tmp_path / "m" / "Normal" / "b.png")
    header = ["file", "label", "patient_id", "source", "view"]
    write_csv(tmp_path / "m" / "manifest.csv", header, [["a.png", "Normal", "m_1", "m", ""]])
    (tmp_path / "empty").mkdir()

    assert detect(tmp_path / "ieee") == "ieee8023"
    assert detect(tmp_path / "rsna") == "rsna"
    assert detect(tmp_path / "folders") == "folders"
    assert detect(tmp_path / "m") == "manifest"
    assert detect(tmp_path / "m" / "manifest.csv") == "manifest"
    with pytest.raises(ValueError, match="no such"):
        detect(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no dataset layout"):
        detect(tmp_path / "empty")

    assert len(read(str(tmp_path / "ieee")).records) == 6
    assert len(read(f"rsna:{tmp_path / 'rsna'}", rsna_not_normal="Normal").records) == 3
    assert [r.patient_id for r in read(f"folders:{tmp_path / 'm'}").records] == ["m_Normal/b.png"]  # the kind wins
    assert [r.patient_id for r in read(f"MANIFEST:{tmp_path / 'm'}").records] == ["m_1"]
    with pytest.raises(ValueError, match="path is empty"):
        read("manifest:")


def test_read_does_not_take_a_drive_letter_for_a_kind(tmp_path, monkeypatch):
    touch(tmp_path / "C:data" / "Normal" / "a.png")  # a relative path whose first part ends in ":"
    monkeypatch.chdir(tmp_path)
    assert [r.label for r in read("C:data").records] == ["Normal"]
