import pytest

from training.data.splits import LeakageError, assign_splits, check_patient_splits


def _rows(n_patients, images_per_patient=2, labels=("COVID-19", "Normal", "Pneumonia"), source="s"):
    return [{"patient_id": f"{source}_{p}", "label": labels[p % len(labels)], "source": source, "file": f"{p}_{i}"}
            for p in range(n_patients) for i in range(images_per_patient)]


def test_patients_never_span_splits_and_fractions_hold():
    rows = _rows(300)
    split_of = assign_splits(rows, (0.7, 0.15, 0.15), seed=1)
    for row in rows:
        row["split"] = split_of[row["patient_id"]]
    check_patient_splits(rows)
    for label in ("COVID-19", "Normal", "Pneumonia"):  # stratified: each label 70/15/15 of its 100 patients
        counts = {s: sum(1 for p, sp in split_of.items() if sp == s and int(p.split("_")[1]) % 3 ==
                         ("COVID-19", "Normal", "Pneumonia").index(label)) for s in ("train", "val", "test")}
        assert counts == {"train": 70, "val": 15, "test": 15}


def test_deterministic_for_a_seed_independent_of_order_and_different_across_seeds():
    rows = _rows(100)
    a = assign_splits(rows, seed=3)
    assert assign_splits(list(reversed(rows)), seed=3) == a
    assert assign_splits(rows, seed=4) != a


def test_stratified_by_source_too():
    rows = _rows(40, source="a") + _rows(40, source="b")
    split_of = assign_splits(rows, (0.5, 0.25, 0.25))
    for source in "ab":
        test_patients = [p for p, s in split_of.items() if s == "test" and p.startswith(source)]
        assert len(test_patients) in (9, 10, 11)


def test_check_raises_on_leak():
    rows = [{"patient_id": "p1", "split": "train"}, {"patient_id": "p1", "split": "test"},
            {"patient_id": "p2", "split": "val"}]
    with pytest.raises(LeakageError, match="p1"):
        check_patient_splits(rows)


def test_bad_fractions():
    with pytest.raises(ValueError):
        assign_splits(_rows(3), (0.5, 0.5, 0.5))
