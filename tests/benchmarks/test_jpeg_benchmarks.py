"""benchmarks/make_jpeg_folder.py and benchmarks/jpeg_decode.py, end to end on a tiny folder."""
import importlib.util
import json
from pathlib import Path

import pytest
from PIL import features

from smartloader.sources import JPEGFolder

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_jpeg_folder_is_an_image_folder_reproducible_from_the_seed(tmp_path, capsys):
    make = _script("make_jpeg_folder")
    assert make.main([str(tmp_path / "a"), "--images", "6", "--classes", "3"]) == 0
    assert "6 images in 3 classes" in capsys.readouterr().out
    make.main([str(tmp_path / "b"), "--images", "6", "--classes", "3"])
    ds = JPEGFolder(tmp_path / "a")
    assert ds.classes == ["class_0", "class_1", "class_2"]
    assert [label for _, label in ds.samples] == [0, 0, 1, 1, 2, 2]
    for path, _ in ds.samples:
        twin = tmp_path / "b" / Path(path).relative_to(tmp_path / "a")
        assert Path(path).read_bytes() == twin.read_bytes()
    sides = [ds[i][0].shape[1:] for i in range(len(ds))]
    assert all(256 <= s <= 500 for hw in sides for s in hw) and len(set(sides)) > 1
    make.main([str(tmp_path / "c"), "--images", "3", "--classes", "3", "--seed", "1"])
    assert (tmp_path / "c" / "class_0" / "000000.jpg").read_bytes() != \
        (tmp_path / "a" / "class_0" / "000000.jpg").read_bytes()


def test_jpeg_decode_writes_every_number(tmp_path, capsys):
    make = _script("make_jpeg_folder")
    with pytest.raises(SystemExit):   # fewer images than classes would leave empty classes
        make.main([str(tmp_path / "d"), "--images", "6"])
    assert "need 1 <= --classes <= --images" in capsys.readouterr().err
    make.main([str(tmp_path / "d"), "--images", "6", "--classes", "2"])
    out = tmp_path / "r.json"
    assert _script("jpeg_decode").main([str(tmp_path / "d"), "--images", "4", "--repeats", "1",
                                        "--size", "32", "--out", str(out)]) == 0
    assert "decode 1/4" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert set(result["decode_ms_median"]) == {"1/1", "1/2", "1/4", "1/8"}
    assert all(v > 0 for v in result["decode_ms_median"].values())
    assert set(result["decode_speedup_vs_full"]) == {"1/2", "1/4", "1/8"}
    low = result["low_res"]
    assert low["size"] == 32 and low["low_res_ms_median"] > 0
    assert 0 < low["mean_abs_diff_vs_full_decode_then_resize"] < 10
    assert result["images"]["timed"] == 4 and result["images"]["in_folder"] == 6
    assert result["config"]["libjpeg_turbo"] == features.version_feature("libjpeg_turbo")
