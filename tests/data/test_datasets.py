import numpy as np
import pytest
import torch
from PIL import Image

from lipcert import LipcertError
from lipcert.data import Cityscapes, DigitScenes, OxfordIIITPet
from lipcert.data.transforms import TrainTransform, resize_pair


def _png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def _cityscapes_tree(root, split="val"):
    raw = np.zeros((4, 6), dtype=np.uint8)
    raw[0] = [7, 8, 11, 26, 33, 0]  # road sidewalk building car bicycle unlabeled
    raw[1] = [1, 4, 34, 255, 24, 23]  # ego vehicle, static, (unused 34), 255, person, sky
    for city, frame in (("aachen", "000000"), ("bonn", "000001")):
        _png(
            root / "leftImg8bit" / split / city / f"{city}_000000_{frame}_leftImg8bit.png",
            np.full((4, 6, 3), 128, dtype=np.uint8),
        )
        _png(root / "gtFine" / split / city / f"{city}_000000_{frame}_gtFine_labelIds.png", raw)
    return raw


def test_cityscapes_layout_and_train_ids(tmp_path):
    _cityscapes_tree(tmp_path)
    ds = Cityscapes(tmp_path, split="val")
    assert len(ds) == 2 and ds.num_classes == 19
    image, target = ds[0]
    assert image.shape == (3, 4, 6) and image.dtype.is_floating_point and float(image.max()) <= 1.0
    assert target[0].tolist() == [0, 1, 2, 13, 18, 255]
    assert target[1].tolist() == [255, 255, 255, 255, 11, 10]
    assert set(np.unique(target.numpy())) <= set(range(19)) | {255}


def test_cityscapes_label_train_ids_are_read_as_they_are_and_checked(tmp_path):
    raw = _cityscapes_tree(tmp_path)
    expected = Cityscapes(tmp_path, split="val")[0][1]  # labelIds mapped through the table
    for city, frame in (("aachen", "000000"), ("bonn", "000001")):
        folder = tmp_path / "gtFine" / "val" / city
        train_ids = expected.numpy().astype(np.uint8)
        _png(folder / f"{city}_000000_{frame}_gtFine_labelTrainIds.png", train_ids)
    assert Cityscapes(tmp_path, split="val").label_kind == "labelIds"  # both present: labelIds first
    ds = Cityscapes(tmp_path, split="val", labels="labelTrainIds")
    assert torch.equal(ds[0][1], expected) and ds[0][1].dtype == torch.int64
    for city, frame in (("aachen", "000000"), ("bonn", "000001")):  # only train ids left: auto finds them
        (tmp_path / "gtFine" / "val" / city / f"{city}_000000_{frame}_gtFine_labelIds.png").unlink()
    auto = Cityscapes(tmp_path, split="val")
    assert auto.label_kind == "labelTrainIds" and torch.equal(auto[1][1], expected)
    _png(tmp_path / "gtFine" / "val" / "aachen" / "aachen_000000_000000_gtFine_labelTrainIds.png", raw)
    with pytest.raises(LipcertError, match="labelTrainIds in"):
        auto[0]  # labelIds saved under the train-id name: refused, not silently mapped
    with pytest.raises(LipcertError, match="labels"):
        Cityscapes(tmp_path, split="val", labels="trainIds")


def test_cityscapes_missing_or_malformed_root(tmp_path):
    with pytest.raises(LipcertError, match="leftImg8bit"):
        Cityscapes(tmp_path, split="val")
    _cityscapes_tree(tmp_path)
    (tmp_path / "gtFine" / "val" / "bonn" / "bonn_000000_000001_gtFine_labelIds.png").unlink()
    with pytest.raises(LipcertError, match="Missing annotation"):
        Cityscapes(tmp_path, split="val")
    with pytest.raises(LipcertError):
        Cityscapes(tmp_path, split="test")


def _pets_tree(root):
    names = {"trainval": ["Abyssinian_1", "beagle_2"], "test": ["Bombay_3"]}
    tri = np.array([[1, 2, 3], [3, 2, 1]], dtype=np.uint8)
    for split, items in names.items():
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"{split}.txt").write_text("".join(f"{n} 1 1 1\n" for n in items))
        for n in items:
            _png(root / "images" / f"{n}.jpg", np.full((2, 3, 3), 200, dtype=np.uint8))
            _png(root / "annotations" / "trimaps" / f"{n}.png", tri)
    return names


def test_pets_splits_and_trimap_mapping(tmp_path):
    _pets_tree(tmp_path)
    three = OxfordIIITPet(tmp_path, split="trainval", classes=3)
    two = OxfordIIITPet(tmp_path, split="test", classes=2)
    assert len(three) == 2 and len(two) == 1
    assert three.num_classes == 3 and two.num_classes == 2
    assert three[0][1].tolist() == [[0, 1, 2], [2, 1, 0]]
    assert two[0][1].tolist() == [[0, 1, 255], [255, 1, 0]]


def test_pets_errors_name_the_layout(tmp_path):
    with pytest.raises(LipcertError, match="images"):
        OxfordIIITPet(tmp_path)
    _pets_tree(tmp_path)
    (tmp_path / "annotations" / "test.txt").write_text("Bombay_3 1 1\n")
    with pytest.raises(LipcertError, match="expected 'name class species breed'"):
        OxfordIIITPet(tmp_path, split="test")
    with pytest.raises(LipcertError):
        OxfordIIITPet(tmp_path, classes=4)


def test_transforms_keep_alignment_and_never_interpolate_labels():
    rng = np.random.default_rng(0)
    target = rng.choice([0, 3, 7, 255], size=(17, 23))
    image = np.stack([target / 255.0] * 3).astype(np.float32)  # image encodes the labels
    img2, tgt2 = resize_pair(image, target, (40, 50))
    assert set(np.unique(tgt2)) <= {0, 3, 7, 255}
    tf = TrainTransform((20, 24), crop=(16, 16), jitter=0.0, seed=1)
    for _ in range(5):
        im3, t3 = tf(image, target)
        assert im3.shape == (3, 16, 16) and t3.shape == (16, 16)
        assert set(np.unique(t3)) <= {0, 3, 7, 255}
    flipped = TrainTransform((17, 23), jitter=0.0, seed=0)
    outs = [flipped(image, target) for _ in range(8)]
    for im4, t4 in outs:  # nearest resize at the same size is the identity: image and labels stay aligned
        assert np.array_equal((im4[0] * 255).round().astype(int), t4)


def test_digit_scenes_deterministic_disjoint_and_labelled():
    a = DigitScenes("train", n=6, seed=3)
    b = DigitScenes("train", n=6, seed=3, cache=False)
    for i in range(6):
        assert np.array_equal(a[i][0].numpy(), b[i][0].numpy()) and np.array_equal(a[i][1], b[i][1])
    test = DigitScenes("test", n=3, seed=3)
    train_src = {x.tobytes() for x in a._digits}
    assert not any(x.tobytes() in train_src for x in test._digits)  # disjoint source digits
    labels = np.concatenate([a[i][1].numpy().ravel() for i in range(6)])
    assert set(np.unique(labels)) <= set(range(11)) | {255}
    assert (labels == 0).mean() > 0.5 and ((labels >= 1) & (labels <= 10)).any() and (labels == 255).any()
    for i in range(6):  # every scene holds 2-4 digits
        digits = set(np.unique(a[i][1].numpy())) - {0, 255}
        assert 1 <= len(digits) <= 4
    with pytest.raises(LipcertError):
        DigitScenes("val")


def test_truncated_and_multichannel_label_files_are_named(tmp_path):
    _cityscapes_tree(tmp_path)
    ds = Cityscapes(tmp_path, split="val")
    img_path, lab_path = ds.pairs[0]
    img_path.write_bytes(img_path.read_bytes()[:40])  # truncated PNG
    with pytest.raises(LipcertError, match=str(img_path.name)):
        ds[0]
    _png(ds.pairs[1][1], np.zeros((4, 6, 3), dtype=np.uint8))  # an RGB label map
    with pytest.raises(LipcertError, match="RGB pixels"):
        ds[1]


@pytest.mark.parametrize("mode", ["P", "RGB", "RGBA"])
def test_pets_trimaps_in_palette_rgb_or_rgba_are_read_as_their_index(tmp_path, mode):
    _pets_tree(tmp_path)
    ds = OxfordIIITPet(tmp_path, split="trainval", classes=3)
    tri = np.array([[1, 2, 3], [3, 2, 1]], dtype=np.uint8)
    path = ds.pairs[0][1]
    if mode == "P":
        im = Image.fromarray(tri, mode="L").convert("P")
    else:
        im = Image.fromarray(np.repeat(tri[..., None], len(mode), axis=2), mode=mode)
    im.save(path)
    assert ds[0][1].tolist() == [[0, 1, 2], [2, 1, 0]]


@pytest.mark.parametrize("kw", [{"size": 0}, {"seed": -1}, {"n": 0}, {"size": 30}])
def test_digit_scenes_refuse_bad_settings_at_construction(kw):
    with pytest.raises(LipcertError):
        DigitScenes(**kw)


def test_cityscapes_label_table_is_cityscapesscripts_own():
    """The 34 -> 19 table against the one the Cityscapes authors publish (cityscapesscripts, a dev dependency)."""
    from cityscapesscripts.helpers.labels import labels

    from lipcert.data.cityscapes import CLASSES, LABEL_TO_TRAIN_ID

    theirs = {lab.id: lab.trainId for lab in labels if lab.id >= 0 and lab.trainId not in (255, -1)}
    assert theirs == LABEL_TO_TRAIN_ID
    names = {lab.trainId: lab.name for lab in labels if lab.trainId not in (255, -1)}
    assert tuple(names[i] for i in range(19)) == CLASSES


def test_cli_datasets_default_to_native_cityscapes_and_name_their_classes(tmp_path):
    from lipcert.cli.inputs import make_dataset

    _cityscapes_tree(tmp_path)
    native = make_dataset("cityscapes", "test", None, None, 0, str(tmp_path))  # no --size: labels as stored
    image, target = native[0]
    assert tuple(image.shape[1:]) == tuple(target.shape) == (4, 6)
    resized = make_dataset("cityscapes", "test", None, [2, 4], 0, str(tmp_path))
    assert tuple(resized[0][1].shape) == (2, 4)
    assert len(native.class_names) == 19 and native.class_names[0] == "road"
    digits = make_dataset("digits", "test", 2, None, 0, None)
    assert tuple(digits[0][0].shape) == (3, 64, 64) and digits.class_names[1] == "digit 0"
