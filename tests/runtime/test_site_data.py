"""Reading a site's labelled films: a folder per class or a CSV, and the refusals."""

import pytest

from runtime.site_data import read_labelled_set

CLASSES = ["COVID-19", "Normal", "Pneumonia"]


def test_a_folder_per_class_whatever_its_case(tmp_path):
    for folder, names in {"covid-19": ["a.png", "b.dcm"], "NORMAL": ["c.jpg", "sub/d.png", ".hidden.png"]}.items():
        for name in names:
            (tmp_path / folder / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / folder / name).write_bytes(b"x")
    (tmp_path / ".git").mkdir()  # hidden folders are not classes
    films = read_labelled_set(tmp_path, CLASSES)
    assert [(f.label, f.patient_id) for f in films] == [
        ("COVID-19", "covid-19/a.png"), ("COVID-19", "covid-19/b.dcm"), ("Normal", "NORMAL/c.jpg"),
        ("Normal", "NORMAL/sub/d.png")]
    assert films[0].file == str(tmp_path / "covid-19" / "a.png")


def test_a_folder_that_is_not_a_class_is_refused(tmp_path):
    (tmp_path / "Normal").mkdir()
    (tmp_path / "Tuberculosis").mkdir()
    with pytest.raises(ValueError, match="'Tuberculosis' are not classes of this model"):
        read_labelled_set(tmp_path, CLASSES)
    with pytest.raises(ValueError, match="no subfolders"):
        read_labelled_set(tmp_path / "Normal", CLASSES)
    with pytest.raises(ValueError, match="no labelled films"):
        read_labelled_set(tmp_path / "Normal" / "..", ["Normal", "Tuberculosis"])
    with pytest.raises(FileNotFoundError, match="not found"):
        read_labelled_set(tmp_path / "absent", CLASSES)


def test_a_csv_with_relative_paths_and_patients(tmp_path):
    (tmp_path / "site").mkdir()
    csv = tmp_path / "site" / "labels.csv"
    csv.write_text("\ufefffile,label,patient_id,notes\nimg/1.png,covid-19,p1,x\n/abs/2.png, Pneumonia ,,\n"
                   "img/3.png,NORMAL,p1,\n")
    films = read_labelled_set(csv, CLASSES)
    assert [(f.file, f.label, f.patient_id) for f in films] == [
        (str(tmp_path / "site" / "img" / "1.png"), "COVID-19", "p1"), ("/abs/2.png", "Pneumonia", "/abs/2.png"),
        (str(tmp_path / "site" / "img" / "3.png"), "Normal", "p1")]


def test_a_csv_without_labels_or_with_unknown_ones_is_refused(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("file,diagnosis\na.png,Normal\n")
    with pytest.raises(ValueError, match="labels.csv: no label column"):
        read_labelled_set(csv, CLASSES)
    csv.write_text("file,label\na.png,Normal\nb.png,Tuberculosis\nc.png,\n")
    with pytest.raises(ValueError, match=r"line 3: label 'Tuberculosis' is not a class .*line 4: no label"):
        read_labelled_set(csv, CLASSES)
    csv.write_text("file,label\n")
    with pytest.raises(ValueError, match="no labelled films"):
        read_labelled_set(csv, CLASSES)
