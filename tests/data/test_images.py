"""Image decoding and image folders: grayscale, RGBA, EXIF orientation, corrupt files."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from transferkit.data import load_path
from transferkit.data.images import ImageStore, load_rgb
from transferkit.errors import DataError

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def _close(pixel, colour, tol=40):
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, colour))


def _top_red_bottom_blue(w=40, h=20) -> Image.Image:
    a = np.zeros((h, w, 3), dtype=np.uint8)
    a[: h // 2] = RED
    a[h // 2:] = BLUE
    return Image.fromarray(a)


def test_grayscale_png_becomes_rgb(tmp_path):
    a = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (16, 1))
    p = tmp_path / "g.png"
    Image.fromarray(a, mode="L").save(p)
    out = load_rgb(str(p), 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    np.testing.assert_array_equal(out[..., 0], a)


def test_rgba_png_is_composited_over_white(tmp_path):
    a = np.zeros((20, 20, 4), dtype=np.uint8)
    a[:, 10:] = (255, 0, 0, 255)  # opaque red right half; left half fully transparent black
    p = tmp_path / "rgba.png"
    Image.fromarray(a, mode="RGBA").save(p)
    out = load_rgb(str(p), 20)
    assert out.shape == (20, 20, 3)
    assert _close(out[10, 2], WHITE, 2), out[10, 2]
    assert _close(out[10, 17], RED, 2), out[10, 17]


def test_jpeg_exif_orientation_is_honoured(tmp_path):
    img = _top_red_bottom_blue()
    plain, rotated = tmp_path / "plain.jpg", tmp_path / "rotated.jpg"
    img.save(plain, quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(rotated, quality=95, exif=exif)
    with Image.open(rotated) as im:
        assert im.getexif().get(0x0112) == 6

    out = load_rgb(str(plain), 32)
    assert _close(out[4, 16], RED) and _close(out[28, 16], BLUE)

    out = load_rgb(str(rotated), 32)
    assert out.shape == (32, 32, 3)
    # the stored top (red) is displayed on the right, the stored bottom (blue) on the left
    assert _close(out[16, 28], RED), out[16, 28]
    assert _close(out[16, 4], BLUE), out[16, 4]


def test_load_rgb_of_corrupt_file_is_data_error(tmp_path):
    p = tmp_path / "broken.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match="broken.png"):
        load_rgb(str(p), 8)


@pytest.fixture
def mixed_folder(tmp_path, mnist):
    """Two classes of real MNIST digits saved in several formats, plus one corrupt file."""
    from tests.helpers import mnist_subset

    x, y = mnist_subset(mnist, [3, 8], 6)
    root = tmp_path / "mixed"
    for i, (img, lab) in enumerate(zip(x, y)):
        d = root / f"class{lab}"
        d.mkdir(parents=True, exist_ok=True)
        kind = i % 3
        if kind == 0:
            Image.fromarray(img, mode="L").save(d / f"{i}.png")
        elif kind == 1:
            rgba = np.dstack([img, img, img, np.full_like(img, 255)])
            Image.fromarray(rgba, mode="RGBA").save(d / f"{i}.png")
        else:
            exif = Image.Exif()
            exif[0x0112] = 3  # rotate 180
            Image.fromarray(img).convert("RGB").save(d / f"{i}.jpg", exif=exif)
    (root / "class3" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (root / "class3" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    Image.fromarray(x[0]).save(root / ".hidden" / "h.png")
    return root


def test_image_folder_skips_and_counts_corrupt_files(mixed_folder):
    ds = load_path(mixed_folder)
    assert ds.modality == "image"
    assert len(ds) == 12
    assert ds.counts["skipped_images"] == 1
    assert sorted(set(ds.y)) == ["class3", "class8"]
    assert sum(v == "class3" for v in ds.y) == 6
    assert not any("corrupt" in p or "notes" in p or ".hidden" in p for p in ds.inputs)
    assert all(i.startswith(("class3/", "class8/")) for i in ds.ids)


def test_image_folder_strict_raises_on_corrupt(mixed_folder):
    with pytest.raises(DataError, match="corrupt.jpg"):
        load_path(mixed_folder, strict=True)


def test_image_store_decodes_mixed_formats(mixed_folder, lite0):
    ds = load_path(mixed_folder)
    store = ImageStore(ds, lite0.preprocess)
    batch = store.batch(np.arange(len(ds)))
    assert batch.shape == (12, 3, 32, 32) and batch.dtype == torch.uint8
    # MNIST digits are white on black: every decoded image has dark background and bright strokes
    flat = batch.float().reshape(12, -1)
    assert (flat.min(1).values < 40).all() and (flat.max(1).values > 150).all()


def test_exif_rotation_applies_inside_folder(tmp_path, mnist):
    """The same digit stored rotated-by-EXIF decodes identically (up to JPEG noise) to the upright one."""
    img = mnist[0][np.flatnonzero(mnist[1] == 7)[0]]  # a 7: clearly not 180-degree symmetric
    up, rot = tmp_path / "up.png", tmp_path / "rot.jpg"
    Image.fromarray(img).save(up)
    exif = Image.Exif()
    exif[0x0112] = 3  # stored upside down, displayed upright
    Image.fromarray(np.ascontiguousarray(img[::-1, ::-1])).save(rot, exif=exif, quality=100)
    a, b = load_rgb(str(up), 28).astype(int), load_rgb(str(rot), 28).astype(int)
    assert np.abs(a - b).mean() < 8
    assert np.abs(a - load_rgb(str(rot), 28)[::-1, ::-1].astype(int)).mean() > 20


def test_folder_with_one_class_is_data_error(tmp_path, mnist):
    from tests.helpers import save_png_folder

    root = save_png_folder(tmp_path / "one", mnist[0][:4], ["only"] * 4)
    with pytest.raises(DataError, match="1 class.*only"):
        load_path(root)


def test_folder_with_no_images_is_data_error(tmp_path):
    for c in ("a", "b"):
        (tmp_path / "empty" / c).mkdir(parents=True)
        (tmp_path / "empty" / c / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="No readable images"):
        load_path(tmp_path / "empty")


def test_folder_with_loose_images_only_is_data_error(tmp_path, mnist):
    root = tmp_path / "loose"
    root.mkdir()
    for i in range(3):
        Image.fromarray(mnist[0][i]).save(root / f"{i}.png")
    with pytest.raises(DataError, match="no class sub-folders.*3 loose images"):
        load_path(root)


def test_missing_path_is_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_path(tmp_path / "nowhere")


def test_folder_content_hash_tracks_file_changes(tmp_path, mnist):
    import os

    from tests.helpers import save_png_folder

    root = save_png_folder(tmp_path / "h", mnist[0][:4], ["a", "b", "a", "b"])
    h1 = load_path(root).content_hash()
    assert load_path(root).content_hash() == h1
    f = next((root / "a").glob("*.png"))
    Image.fromarray(mnist[0][9]).save(f)
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10_000_000_000))
    assert load_path(root).content_hash() != h1


def test_truncated_jpeg_is_skipped_and_counted_like_other_unreadable_files(tmp_path, mnist):
    """A JPEG cut off mid-file cannot be decoded (load_rgb fails on it), so the folder loader must skip
    and count it like any unreadable image, not keep it and let the fit crash later."""
    from tests.helpers import mnist_subset, save_png_folder

    x, y = mnist_subset(mnist, [4, 9], 4)
    root = save_png_folder(tmp_path / "trunc", x, [f"c{v}" for v in y])
    rng = np.random.default_rng(0)
    bad = root / "c4" / "truncated.jpg"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(bad, quality=95)
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    with pytest.raises(DataError):
        load_rgb(str(bad), 16)  # really unreadable

    ds = load_path(root)
    assert str(bad) not in ds.inputs
    assert ds.counts["skipped_images"] == 1
    with pytest.raises(DataError, match="truncated.jpg"):
        load_path(root, strict=True)


def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    """A 16-bit PNG (mode I;16, values 0..65535) must map to 0..255, not saturate to white."""
    a = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1))
    p = tmp_path / "deep.png"
    Image.fromarray(a).save(p)
    with Image.open(p) as im:
        assert im.mode.startswith("I")
    out = load_rgb(str(p), 16)[..., 0].astype(int)
    np.testing.assert_allclose(out[0], a[0] / 257.0, atol=3)
