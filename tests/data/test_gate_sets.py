"""The chest gate's data: the transformed kinds, folds by patient, drawn negatives, and reading manifests."""

import numpy as np
from PIL import Image

from training.data import gate_sets as sets

A = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)


def _item(image=A):
    return sets.Item(image, "nih", "frontal", "p1", "a.png")


def test_transforms_are_what_their_names_say():
    expected = {
        "inverted": ("inverted", [[254, 253, 252], [251, 250, 249]]),
        "upside_down": ("upside_down", [[6, 5, 4], [3, 2, 1]]),
        "flipped_vertically": ("upside_down", [[4, 5, 6], [1, 2, 3]]),
        "rotated_90_cw": ("rotated", [[4, 1], [5, 2], [6, 3]]),
        "rotated_90_ccw": ("rotated", [[3, 6], [2, 5], [1, 4]]),
    }
    assert set(expected) == set(sets.TRANSFORMS)
    for kind, (reason, pixels) in expected.items():
        item = sets.transform(_item(), kind)
        assert item.reason == reason and item.kind == kind
        assert item.image.tolist() == pixels, kind
        assert item.patient == "p1" and item.source == "nih"  # a transformed film keeps its patient and source


def test_folds_keep_a_patient_together_and_use_every_fold():
    folds = [sets.patient_fold(f"patient_{i}") for i in range(500)]
    assert set(folds) == set(range(sets.FOLDS))
    assert min(np.bincount(folds)) > 500 / sets.FOLDS / 2  # roughly even
    assert sets.patient_fold("ieee8023_13") == sets.patient_fold("ieee8023_13")


def test_drawn_images_are_reproducible_and_differ_by_seed():
    for kind in sets.DRAWN:
        a, b = sets.drawn(kind, 7), sets.drawn(kind, 7)
        assert a.dtype == np.uint8 and a.ndim == 2 and np.array_equal(a, b)
        assert not np.array_equal(a, sets.drawn(kind, 8)) or kind == "flat"


def test_training_and_test_negatives_do_not_share_images():
    train = sets.training_not_radiographs(8)
    test = sets.test_not_radiographs(8)
    assert {i.kind for i in test} >= {"photograph", "document", *sets.DRAWN}
    assert not {i.patient for i in train} & {i.patient for i in test}
    assert all(i.reason == "not_radiograph" for i in train + test)


def test_reading_a_manifest_lists_unreadable_files(tmp_path):
    Image.fromarray(np.full((40, 30), 90, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not a png")
    (tmp_path / "manifest.csv").write_text("file,label,patient_id,source,view,kind\n"
                                           "a.png,Normal,p1,here,PA,lateral\nb.png,Normal,p2,here,PA,ct\n")
    skipped = []
    films = sets.chest_films([tmp_path], skipped)
    assert [(f.kind, f.reason, f.patient) for f in films] == [("here", "frontal", "p1")]
    assert len(skipped) == 1 and skipped[0][0].endswith("b.png")
    others = sets.not_frontal(tmp_path, [])
    assert [(i.kind, i.reason) for i in others] == [("lateral", "not_frontal")]
