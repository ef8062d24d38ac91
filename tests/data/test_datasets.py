"""Each loader on a miniature written here in the dataset's exact on-disk format."""

import gzip
import json
import struct

import numpy as np
import pytest

from miniatures import png
from rankopt.data import (
    BadImageError,
    DatasetNotFoundError,
    FashionMNIST,
    cars196,
    create_dataset,
    csv_images,
    cub200,
    dyml,
    gldv2,
    image_folder,
    inaturalist,
    inshop,
    sop,
)
from rankopt.data.fashion_mnist import read_idx


def test_sop(tmp_path):
    lines = ["image_id class_id super_class_id path"]
    for i, (cls, sup) in enumerate([(1, 1), (1, 1), (2, 1), (3, 2)], start=1):
        rel = f"bicycle_final/{cls}_{i}.JPG"
        png(tmp_path / rel)
        lines.append(f"{i} {cls} {sup} {rel}")
    (tmp_path / "Ebay_train.txt").write_text("\n".join(lines) + "\n")
    ds = sop(tmp_path, "train")
    assert len(ds) == 4 and ds.labels.tolist() == [[0, 0], [0, 0], [1, 0], [2, 1]]
    img, lab, idx = ds[3]
    assert img.size == (8, 8) and lab.tolist() == [2, 1] and idx == 3
    with pytest.raises(DatasetNotFoundError, match="Ebay_test.txt"):
        sop(tmp_path, "test")
    (tmp_path / "Ebay_test.txt").write_text("image_id class_id super_class_id path\n1 2\n")
    with pytest.raises(ValueError, match=r"Ebay_test.txt:2: expected 4 fields"):
        sop(tmp_path, "test")


def test_cub_first_half_train(tmp_path):
    for c in ["001.Albatross", "002.Auklet", "003.Blackbird", "004.Bunting"]:
        for k in range(2):
            png(tmp_path / "images" / c / f"{k}.jpg")
    train, test = cub200(tmp_path, "train"), cub200(tmp_path, "test")
    assert len(train) == len(test) == 4
    assert {p.parent.name for p in train.paths} == {"001.Albatross", "002.Auklet"}


def test_inaturalist_base_and_full(tmp_path):
    cats = [
        {
            "id": 7,
            "name": "a",
            "supercategory": "Plantae",
            "kingdom": "Plantae",
            "phylum": "P1",
            "class": "C1",
            "order": "O1",
            "family": "F1",
            "genus": "G1",
        },
        {
            "id": 9,
            "name": "b",
            "supercategory": "Plantae",
            "kingdom": "Plantae",
            "phylum": "P1",
            "class": "C1",
            "order": "O2",
            "family": "F1",
            "genus": "G1",
        },
    ]
    (tmp_path / "train2018.json").write_text(json.dumps({"categories": cats}))
    rels = ["train_val2018/Plantae/7/x.jpg", "train_val2018/Plantae/9/y.jpg", "train_val2018/Plantae/9/z.jpg"]
    for r in rels:
        png(tmp_path / r)
    (tmp_path / "Inat_dataset_splits").mkdir()
    (tmp_path / "Inat_dataset_splits/Inaturalist_train_set1.txt").write_text("\n".join(rels) + "\n")
    base = inaturalist(tmp_path, "train", "base")
    full = inaturalist(tmp_path, "train", "full")
    assert base.labels.tolist() == [[0, 0], [1, 0], [1, 0]]
    assert full.n_levels == 7
    # F1 under O1 and F1 under O2 are two families: the hierarchy stays a tree
    assert full.labels[0, 2] != full.labels[1, 2]


def test_inshop_splits_and_levels(tmp_path):
    rows = [
        ("img/WOMEN/Dresses/id_1/01.jpg", "id_1", "train"),
        ("img/MEN/Denim/id_2/01.jpg", "id_2", "query"),
        ("img/WOMEN/Denim/id_3/01.jpg", "id_3", "gallery"),
        ("img/MEN/Denim/id_2/02.jpg", "id_2", "gallery"),
    ]
    for r in rows:
        png(tmp_path / r[0])
    text = "4\nimage_name item_id evaluation_status\n" + "\n".join(" ".join(r) for r in rows) + "\n"
    (tmp_path / "list_eval_partition.txt").write_text(text)
    g = inshop(tmp_path, "gallery")
    assert len(g) == 2 and g.n_levels == 3
    assert g.labels[0, 1] != g.labels[1, 1]  # WOMEN/Denim and MEN/Denim are different categories


def test_dyml_train_and_benchmark(tmp_path):
    (tmp_path / "train/imgs").mkdir(parents=True)
    for f in ["a.jpg", "b.jpg"]:
        png(tmp_path / "train/imgs" / f)
    (tmp_path / "train/label.csv").write_text(
        "fname, fine_id0.jpg, middle_id, coarse_id\na.jpg, 5, 2, 1\nb.jpg, 6, 2, 1\n"
    )
    tr = dyml(tmp_path, "vehicle", "train")
    assert tr.labels.tolist() == [[0, 0, 0], [1, 0, 0]]
    png(tmp_path / "bmk_middle/query/q.jpg")
    (tmp_path / "bmk_middle/query.csv").write_text("fname, labels0.jpg\nq.jpg, 3\n")
    q = dyml(tmp_path, "vehicle", "query", level="middle")
    assert len(q) == 1 and q.n_levels == 1
    (tmp_path / "train/label.csv").write_text("fname, fine, middle, coarse\na.jpg, x, 2, 1\n")
    with pytest.raises(ValueError, match=r"label.csv:2: labels must be integers"):
        dyml(tmp_path, "vehicle", "train")


def test_cars196(tmp_path):
    from scipy.io import savemat

    annos = np.zeros((3,), dtype=[("relative_im_path", "O"), ("class", "O"), ("test", "O")])
    for i, cls in enumerate([1, 98, 99]):
        png(tmp_path / f"car_ims/{i:06d}.jpg")
        annos[i] = (f"car_ims/{i:06d}.jpg", cls, 0)
    savemat(tmp_path / "cars_annos.mat", {"annotations": annos})
    assert len(cars196(tmp_path, "train")) == 2 and len(cars196(tmp_path, "test")) == 1


def test_gldv2_drops_unclustered(tmp_path):
    (tmp_path / "train_clean.csv").write_text("landmark_id,images\n1,abc123 abd456\n2,bcd789\n")
    (tmp_path / "train_label_to_subcategory_with_clusters.csv").write_text(
        "landmark_id,cluster,overall_cluster\n1,church,religious\n2,,\n"
    )
    for i in ["abc123", "abd456"]:
        png(tmp_path / f"images/train/{i[0]}/{i[1]}/{i[2]}/{i}.jpg")
    ds = gldv2(tmp_path, "train")
    assert len(ds) == 2 and ds.n_levels == 3


def test_image_folder_and_csv(tmp_path):
    for sup, cls in [("shoes", "boot"), ("shoes", "sandal"), ("bags", "tote")]:
        png(tmp_path / "tree" / sup / cls / "1.png")
    ds = image_folder(tmp_path / "tree")
    assert ds.n_levels == 2 and len(ds) == 3
    assert ds.labels[1, 1] == ds.labels[2, 1] != ds.labels[0, 1]  # sorted: bags/tote, shoes/boot, shoes/sandal
    png(tmp_path / "x.png")
    (tmp_path / "d.csv").write_text("path,label,label_level1\nx.png,3,1\nx.png,4,1\n")
    c = csv_images(tmp_path / "d.csv")
    assert c.labels.tolist() == [[0, 0], [1, 0]]
    (tmp_path / "bad.csv").write_text("path,label\nx.png,1.5\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: labels must be integers"):
        csv_images(tmp_path / "bad.csv")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        image_folder(tmp_path / "nothere")


def test_bad_image_error_or_skip(tmp_path):
    png(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "d.csv").write_text("path,label\nok.png,0\nbroken.png,1\n")
    ds = csv_images(tmp_path / "d.csv")
    with pytest.raises(BadImageError, match="broken.png"):
        ds[1]
    skipped = csv_images(tmp_path / "d.csv", on_bad_image="skip")
    assert len(skipped) == 1 and skipped.n_skipped == 1


def write_idx(path, array, compress=False):
    codes = {np.uint8: 0x08}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


@pytest.mark.parametrize("compress", [False, True])
def test_fashion_mnist_idx_and_hierarchy(tmp_path, compress):
    images = np.arange(5 * 28 * 28, dtype=np.uint8).reshape(5, 28, 28)
    labels = np.array([0, 1, 5, 8, 9], dtype=np.uint8)
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images, compress)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels, compress)
    ds = FashionMNIST("test", tmp_path)
    img, lab, _ = ds[2]
    assert img.shape == (1, 28, 28) and float(img.max()) <= 1.0
    assert ds.labels.tolist() == [[0, 0], [1, 1], [5, 2], [8, 3], [9, 2]]
    assert np.array_equal(read_idx(next(tmp_path.glob("t10k-images*"))), images)


def test_fashion_mnist_missing_and_corrupt(tmp_path, monkeypatch):
    monkeypatch.setattr("rankopt.data.fashion_mnist.SYSTEM_DIR", tmp_path / "none")
    with pytest.raises(DatasetNotFoundError, match="dataset-fashion-mnist"):
        FashionMNIST("train", tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(ValueError, match="not an IDX file"):
        FashionMNIST("train", tmp_path)


def test_registry_suggests():
    with pytest.raises(ValueError, match="did you mean sop"):
        create_dataset("sopp", "x")


# one label space over every split ------------------------------------------------------------------


def test_inshop_query_and_gallery_share_labels_when_id_sets_differ(tmp_path):
    """Query items {2, 5}, gallery items {1, 2, 3, 5}: per-split numbering would give query id 5 the
    label 1 and gallery id 5 the label 3; one mapping over the file gives both the same label."""
    rows = []
    for item, status in [
        (1, "gallery"),
        (2, "query"),
        (2, "gallery"),
        (3, "gallery"),
        (5, "query"),
        (5, "gallery"),
        (4, "train"),
    ]:
        rel = f"img/WOMEN/Dresses/id_{item:08d}/{status}.jpg"
        png(tmp_path / rel)
        rows.append(f"{rel} id_{item:08d} {status}")
    (tmp_path / "list_eval_partition.txt").write_text(
        f"{len(rows)}\nimage_name item_id evaluation_status\n" + "\n".join(rows) + "\n"
    )
    q, g = inshop(tmp_path, "query"), inshop(tmp_path, "gallery")
    q_items = [p.parts[-2] for p in q.paths]
    g_items = [p.parts[-2] for p in g.paths]
    for i, qi in enumerate(q_items):
        same = [j for j, gi in enumerate(g_items) if gi == qi]
        assert len(same) == 1 and q.labels[i, 0] == g.labels[same[0], 0], qi
        others = [j for j, gi in enumerate(g_items) if gi != qi]
        assert all(q.labels[i, 0] != g.labels[j, 0] for j in others)


def test_dyml_query_and_gallery_share_labels_when_id_sets_differ(tmp_path):
    (tmp_path / "bmk_fine").mkdir()
    (tmp_path / "bmk_fine/query.csv").write_text("fname, labels0.jpg\nq0.jpg, 7\nq1.jpg, 30\n")
    (tmp_path / "bmk_fine/gallery.csv").write_text("fname, labels0.jpg\ng0.jpg, 3\ng1.jpg, 7\ng2.jpg, 12\ng3.jpg, 30\n")
    for name in ("query/q0", "query/q1", "gallery/g0", "gallery/g1", "gallery/g2", "gallery/g3"):
        png(tmp_path / "bmk_fine" / f"{name}.jpg")
    q, g = dyml(tmp_path, "vehicle", "query"), dyml(tmp_path, "vehicle", "gallery")
    assert q.labels[0, 0] == g.labels[1, 0] and q.labels[1, 0] == g.labels[3, 0]
    assert len(set(g.labels[:, 0].tolist())) == 4


def test_sop_train_and_test_classes_never_collide(tmp_path):
    (tmp_path / "Ebay_train.txt").write_text("image_id class_id super_class_id path\n1 1 1 a/1.jpg\n2 2 1 a/2.jpg\n")
    (tmp_path / "Ebay_test.txt").write_text("image_id class_id super_class_id path\n3 3 2 b/3.jpg\n4 4 2 b/4.jpg\n")
    for name in ("a/1", "a/2", "b/3", "b/4"):
        png(tmp_path / f"{name}.jpg")
    train, test = sop(tmp_path, "train"), sop(tmp_path, "test")
    assert set(train.labels[:, 0].tolist()).isdisjoint(test.labels[:, 0].tolist())
    assert set(train.labels[:, 1].tolist()).isdisjoint(test.labels[:, 1].tolist())


def test_image_folder_split_folders_and_csv_split_column(tmp_path):
    for split, classes in [("train", ["a", "b"]), ("test", ["b", "c"])]:
        for c in classes:
            png(tmp_path / "tree" / split / c / "1.png")
    tr, te = image_folder(tmp_path / "tree", "train"), image_folder(tmp_path / "tree", "test")
    assert tr.labels[:, 0].tolist() == [0, 1] and te.labels[:, 0].tolist() == [1, 2]  # "b" is one label in both
    with pytest.raises(ValueError, match="not one of its split folders"):
        image_folder(tmp_path / "tree", "valid")
    png(tmp_path / "x.png")
    (tmp_path / "s.csv").write_text("path,label,split\nx.png,10,train\nx.png,20,test\nx.png,10,test\n")
    assert csv_images(tmp_path / "s.csv", "test").labels[:, 0].tolist() == [1, 0]
    assert csv_images(tmp_path / "s.csv", "train").labels[:, 0].tolist() == [0]
    with pytest.raises(ValueError, match="no 'split' column"):
        csv_images(tmp_path / "d.csv" if (tmp_path / "d.csv").exists() else _plain_csv(tmp_path), "train")


def _plain_csv(tmp_path):
    png(tmp_path / "x.png")
    (tmp_path / "d.csv").write_text("path,label\nx.png,1\n")
    return tmp_path / "d.csv"


def test_a_missing_or_empty_image_stops_before_training_naming_the_first(tmp_path):
    from rankopt.data import BadImageError, image_folder

    for c in ("a", "b"):
        for i in range(2):
            png(tmp_path / "tree" / c / f"{i}.png")
    (tmp_path / "tree" / "b" / "1.png").write_bytes(b"")  # zero bytes: found at construction, not mid-epoch
    with pytest.raises(BadImageError, match=r"1 image file\(s\) missing or empty, the first .*b/1.png"):
        image_folder(tmp_path / "tree")
    assert len(image_folder(tmp_path / "tree", on_bad_image="skip")) == 3
