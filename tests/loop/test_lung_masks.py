import csv

from training.loop.lungs import read_masks

COLUMNS = ["mask", "image", "label", "source", "patient_id"]


def _folder(root, table, source, label, n):
    root.mkdir(parents=True)
    with open(root / table, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows({"mask": f"masks/{source}_{i}.png", "image": f"images/{source}_{i}.png", "label": label,
                          "source": source, "patient_id": f"{source}_{i}"} for i in range(n))
    return root


def test_read_masks_reads_both_table_layouts_and_a_new_folder_moves_no_patient(tmp_path):
    covid = _folder(tmp_path / "lungmasks", "manifest.csv", "ieee8023", "COVID-19", 40)
    normal = _folder(tmp_path / "montgomery-shenzhen", "masks.csv", "shenzhen", "Normal", 30)
    (normal / "manifest.csv").write_text("file,label,patient_id,source,view\n")  # the images' manifest: not masks
    alone = read_masks(covid)
    both = read_masks([covid, normal])
    assert len(alone) == 40 and len(both) == 70
    assert {r["source"] for r in both} == {"ieee8023", "shenzhen"}
    assert all(r["mask"].startswith(str(tmp_path)) and r["mask"].endswith(".png") for r in both)
    assert {r["patient_id"]: r["split"] for r in alone} == {r["patient_id"]: r["split"] for r in both[:40]}
    shenzhen_splits = {r["split"] for r in both if r["source"] == "shenzhen"}
    assert shenzhen_splits == {"train", "val", "test"}  # every split holds normal films too
