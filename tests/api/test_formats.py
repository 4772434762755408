"""Array and table exports: every served media type read back and compared with the original,
content negotiation (``Accept``, ``?format=``, wildcards, ``q``) and Tiled's 406 answers."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image

from ferrotile.api import formats
from ferrotile.api import serialize_array as sa
from ferrotile.api import serialize_table as st
from tests.api.conftest import create_array
from tests.conftest import RunningServer

NONE_SUPPORTED = "None of the media types requested by the client are supported. Supported: "


# --- array serializers, directly ---------------------------------------------------------------


@pytest.mark.parametrize("data", [np.arange(7), (np.arange(12, dtype="f4") + 0.1).reshape(3, 4)])
def test_csv_round_trip(data: np.ndarray) -> None:
    text = sa.as_csv(data).decode()
    back = np.loadtxt(io.StringIO(text), delimiter=",", dtype=data.dtype, ndmin=data.ndim)
    np.testing.assert_array_equal(back, data)


def test_csv_layout_is_tileds() -> None:
    assert sa.as_csv(np.array([0, 7, 8, 30, 5, 6, 7])) == b"0\n7\n8\n30\n5\n6\n7\n"
    assert sa.as_csv(np.array([[1.5, 2.0], [3.0, 4.25]])) == b"1.5,2.0\n3.0,4.25\n"
    assert sa.as_csv(np.array(3)) == b"3\n"


def test_csv_refuses_three_dimensions() -> None:
    with pytest.raises(sa.UnsupportedShape):
        sa.as_csv(np.zeros((2, 2, 2)))


@pytest.mark.parametrize(
    "data",
    [
        np.arange(12, dtype="u1").reshape(3, 4),
        (np.arange(12, dtype="u2") * 5000).reshape(3, 4),
        np.array([[True, False], [False, True]]),
        np.arange(24, dtype="u1").reshape(2, 4, 3),  # RGB
        np.arange(32, dtype="u1").reshape(2, 4, 4),  # RGBA
    ],
)
def test_png_is_lossless_for_what_png_holds(data: np.ndarray) -> None:
    back = np.asarray(Image.open(io.BytesIO(sa.as_png(data))))
    np.testing.assert_array_equal(back, data)


def test_png_autoscales_other_dtypes_like_tiled() -> None:
    data = np.linspace(-1.0, 1.0, 100).reshape(10, 10)
    image = Image.open(io.BytesIO(sa.as_png(data)))
    pixels = np.asarray(image)
    assert image.mode == "L" and pixels.shape == (10, 10)
    # 1st..99th percentile stretched to 0..255: monotone, saturated at both ends.
    assert pixels.min() == 0 and pixels.max() == 255
    assert (np.diff(pixels.ravel().astype(int)) >= 0).all()
    constant = np.asarray(Image.open(io.BytesIO(sa.as_png(np.full((3, 3), 7, "i4")))))
    np.testing.assert_array_equal(constant, np.zeros((3, 3), "u1"))


def test_png_shapes() -> None:
    assert np.asarray(Image.open(io.BytesIO(sa.as_png(np.arange(5, dtype="u1"))))).shape == (1, 5)
    with pytest.raises(sa.UnsupportedShape):
        sa.as_png(np.zeros((2, 2, 2, 2)))
    with pytest.raises(sa.SerializationError):
        sa.as_png(np.zeros((5, 6, 7)))  # 7 channels: no image mode


@pytest.mark.parametrize(
    "data",
    [
        np.arange(12, dtype="i2").reshape(3, 4),
        np.linspace(0, 1, 60, dtype="f4").reshape(3, 4, 5),
        np.arange(4.0),
    ],
)
def test_tiff_round_trip(data: np.ndarray) -> None:
    import tifffile

    back = tifffile.imread(io.BytesIO(sa.as_tiff(data)))
    assert back.dtype == data.dtype
    np.testing.assert_array_equal(back.reshape(data.shape), data)


def test_tiff_refuses_five_dimensions() -> None:
    with pytest.raises(sa.UnsupportedShape):
        sa.as_tiff(np.zeros((1, 1, 1, 1, 2)))


@pytest.mark.parametrize(
    "data",
    [np.arange(6, dtype=">i4").reshape(2, 3), np.asfortranarray(np.ones((2, 3))), np.array(["a"])],
)
def test_npy_round_trip(data: np.ndarray) -> None:
    back = np.load(io.BytesIO(sa.as_npy(data)), allow_pickle=False)
    assert back.dtype == data.dtype
    np.testing.assert_array_equal(back, data)


def test_npy_refuses_objects() -> None:
    with pytest.raises(sa.SerializationError):
        sa.as_npy(np.array([{}], dtype=object))


def test_json() -> None:
    assert sa.as_json(np.arange(6).reshape(2, 3)) == b"[[0,1,2],[3,4,5]]"
    assert sa.as_json(np.array(8)) == b"8"
    assert sa.as_json(np.arange(6)[::2]) == b"[0,2,4]"
    assert sa.as_json(np.array([1.0, np.nan])) == b"[1.0,null]"
    with pytest.raises(sa.SerializationError):
        sa.as_json(np.array([1 + 2j]))


def test_html() -> None:
    assert sa.as_html(np.eye(3)).startswith(b'<html><body><img src="data:image/png;base64,')
    assert sa.as_html(np.array(["a", "b"])) == b"<html><body>a\nb\n</body></html>"


# --- table serializers, directly ---------------------------------------------------------------


@pytest.fixture
def table() -> pa.Table:
    return pa.table(
        {
            "a": [1, 2, 3],
            "b": [0.5, None, 2.5],
            "c": ["x", "y,z", None],
        }
    )


def test_table_arrow_and_parquet_round_trip(table: pa.Table) -> None:
    import pyarrow.parquet as pq

    assert pa.ipc.open_file(st.as_arrow_file(table, {})).read_all().equals(table)
    assert pq.read_table(io.BytesIO(st.as_parquet(table, {}))).equals(table)


def test_table_csv(table: pa.Table) -> None:
    import pyarrow.csv

    text = st.as_csv(table, {})
    assert text == b'a,b,c\n1,0.5,x\n2,,"y,z"\n3,2.5,\n'  # pandas' layout, as Tiled
    options = pyarrow.csv.ConvertOptions(strings_can_be_null=True)
    assert pyarrow.csv.read_csv(io.BytesIO(text), convert_options=options).equals(table)
    assert st.as_csv(table, {"header": "absent"}).startswith(b"1,0.5,x\n")


def test_table_json_and_json_seq(table: pa.Table) -> None:
    import orjson

    assert orjson.loads(st.as_json(table, {})) == table.to_pydict()
    seq = st.as_json_seq(table, {})
    records = seq.split(b"\n")
    assert records[-1] == b"" and all(r.startswith(b"\x1e") for r in records[:-1])
    assert [orjson.loads(r[1:]) for r in records[:-1]] == table.to_pylist()
    assert st.as_json_seq(table.slice(0, 0), {}) == b""


def test_table_json_leaves_out_a_pandas_index() -> None:
    import orjson
    import pandas as pd

    df = pd.DataFrame({"x": [1, 2]}, index=pd.Index([10, 20], name="i"))
    assert orjson.loads(st.as_json(pa.Table.from_pandas(df), {})) == {"x": [1, 2]}


def test_table_html(table: pa.Table) -> None:
    html = st.as_html(table, {}).decode()
    assert html.startswith("<table") and "<td>y,z</td>" in html


def test_sparse_serializers_take_a_table(table: pa.Table) -> None:
    assert formats.SPARSE_SERIALIZERS[formats.ARROW](table) == st.as_arrow_file(table, {})


# --- through the server ------------------------------------------------------------------------


def test_about_lists_exactly_what_is_served(http: httpx.Client) -> None:
    about = http.get("/").json()
    assert about["formats"]["array"] == list(formats.ARRAY_SERIALIZERS)
    assert about["formats"]["table"] == list(formats.TABLE_SERIALIZERS)
    array_aliases = about["aliases"]["array"]
    assert array_aliases["image/png"] == ["png"] and array_aliases["image/tiff"] == ["tiff", "tif"]
    assert array_aliases["application/x-npy"] == ["npy"]
    assert about["aliases"]["table"]["application/x-parquet"] == ["parquet"]
    for family, by_type in about["aliases"].items():
        for media_type in by_type:
            assert media_type in about["formats"][family], (family, media_type)


@pytest.fixture
def image(http: httpx.Client, key: str) -> tuple[str, np.ndarray]:
    data = (np.arange(20, dtype="u2") * 1000).reshape(4, 5)
    create_array(http, key, data)
    return key, data


def _decode(media_type: str, body: bytes, like: np.ndarray) -> np.ndarray:
    if media_type == "application/octet-stream":
        return np.frombuffer(body, like.dtype).reshape(like.shape)
    if media_type == "application/json":
        return np.array(httpx.Response(200, content=body).json(), like.dtype)
    if media_type.startswith("text/csv"):
        return np.loadtxt(io.StringIO(body.decode()), delimiter=",", dtype=like.dtype, ndmin=2)
    if media_type == "image/png":
        return np.asarray(Image.open(io.BytesIO(body)))
    if media_type == "image/tiff":
        import tifffile

        return np.asarray(tifffile.imread(io.BytesIO(body)))
    assert media_type == "application/x-npy"
    return np.asarray(np.load(io.BytesIO(body), allow_pickle=False))


@pytest.mark.parametrize(
    ("accept", "fmt", "media_type"),
    [
        (None, None, "application/octet-stream"),
        ("*/*", None, "application/octet-stream"),
        ("application/json", None, "application/json"),
        ("text/csv", None, "text/csv; charset=utf-8"),
        ("image/*", None, "image/png"),
        ("image/tiff", None, "image/tiff"),
        (None, "png", "image/png"),
        (None, "tif", "image/tiff"),
        (None, "npy", "application/x-npy"),
        (None, "csv", "text/csv; charset=utf-8"),
        (None, "application/json", "application/json"),
        ("application/x-msgpack", "bogus,json", "application/json"),  # format wins
        ("application/x-msgpack, image/png;q=0.5, image/tiff", None, "image/tiff"),  # q order
    ],
)
def test_array_export_round_trip(
    http: httpx.Client,
    image: tuple[str, np.ndarray],
    accept: str | None,
    fmt: str | None,
    media_type: str,
) -> None:
    key, data = image
    headers = {} if accept is None else {"Accept": accept}
    params = {} if fmt is None else {"format": fmt}
    response = http.get(f"/array/full/{key}", headers=headers, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    np.testing.assert_array_equal(_decode(media_type, response.content, data), data)


def test_array_block_export(http: httpx.Client, key: str) -> None:
    data = np.arange(24, dtype="u1").reshape(4, 6)
    create_array(http, key, data)
    response = http.get(f"/array/block/{key}", params={"block": "0,0", "format": "png"})
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(response.content))), data)


def test_json_scalar(http: httpx.Client, key: str) -> None:
    create_array(http, key, np.array([0, 7, 8, 30]))
    response = http.get(f"/array/full/{key}", params={"slice": "2"}, headers={"Accept": JSON})
    assert response.status_code == 200 and response.content == b"8"


JSON = "application/json"


@pytest.mark.parametrize(
    ("headers", "params", "requested"),
    [
        ({"Accept": "application/x-msgpack"}, {}, "application/x-msgpack"),
        ({}, {"format": "bogus"}, "bogus"),
        ({}, {"format": "octet"}, "octet"),
        ({"Accept": "image/png;q=0"}, {}, "image/png;q=0"),
    ],
)
def test_unsupported_media_type_is_406(
    http: httpx.Client, image: tuple[str, np.ndarray], headers: dict, params: dict, requested: str
) -> None:
    key, _ = image
    for route, extra in (("full", {}), ("block", {"block": "0,0"})):
        response = http.get(f"/array/{route}/{key}", headers=headers, params={**params, **extra})
        assert response.status_code == 406, response.text
        assert response.headers["content-type"] == JSON
        detail = response.json()["detail"]
        supported = ", ".join(formats.ARRAY_SERIALIZERS)
        assert detail == f"{NONE_SUPPORTED}{supported}. Requested: {requested}."


def test_shape_a_format_cannot_hold_is_406(http: httpx.Client, key: str) -> None:
    create_array(http, key, np.zeros((2, 3, 5), "f8"))
    response = http.get(f"/array/full/{key}", params={"format": "csv"})
    assert response.status_code == 406
    assert response.json()["detail"] == (
        "The shape of this data (2, 3, 5) is incompatible with the requested format (text/csv). "
        "Slice it or choose a different format."
    )
    response = http.get(f"/array/full/{key}", params={"format": "png"})
    assert response.status_code == 406
    assert response.json()["detail"].startswith(
        "This type is supported in general but there was an error packing this specific data: "
        "Failed to serialize this array as png."
    )
    # Sliced to 2-D, the same data exports fine.
    response = http.get(f"/array/full/{key}", params={"format": "csv", "slice": "0,:,:"})
    assert response.status_code == 200 and response.text == "0.0,0.0,0.0,0.0,0.0\n" * 3


# --- table exports through the server (written by the stock client) ---------------------------


@pytest.fixture
def written_table(server: RunningServer, key: str) -> tuple[str, pd.DataFrame]:
    from tiled.client import from_uri

    df = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.5], "c": ["x", "y,z", "w"]})
    from_uri(server.url, api_key=server.api_key).write_dataframe(df, key=key)
    return key, df


@pytest.mark.parametrize(
    ("accept", "fmt", "media_type"),
    [
        (None, None, "application/vnd.apache.arrow.file"),
        (None, "parquet", "application/x-parquet"),
        ("text/csv", None, "text/csv; charset=utf-8"),
        (None, "json", "application/json"),
        ("application/json-seq", None, "application/json-seq"),
        (None, "html", "text/html; charset=utf-8"),
    ],
)
def test_table_export_round_trip(
    http: httpx.Client,
    written_table: tuple[str, pd.DataFrame],
    accept: str | None,
    fmt: str | None,
    media_type: str,
) -> None:
    import orjson
    import pyarrow.parquet as pq

    key, df = written_table
    headers = {} if accept is None else {"Accept": accept}
    params = {} if fmt is None else {"format": fmt}
    response = http.get(f"/table/full/{key}", headers=headers, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    body = response.content
    if fmt == "parquet":
        back = pq.read_table(io.BytesIO(body)).to_pandas()
    elif media_type == "application/vnd.apache.arrow.file":
        back = pa.ipc.open_file(body).read_pandas()
    elif accept == "text/csv":
        back = pd.read_csv(io.BytesIO(body))
    elif fmt == "json":
        back = pd.DataFrame(orjson.loads(body))
    elif accept == "application/json-seq":
        assert body.startswith(b"\x1e") and body.endswith(b"\n")
        back = pd.DataFrame([orjson.loads(r) for r in body.split(b"\x1e")[1:]])
    else:
        assert b"<td>y,z</td>" in body
        return
    pd.testing.assert_frame_equal(back, df, check_dtype=False)


def test_table_406(http: httpx.Client, written_table: tuple[str, pd.DataFrame]) -> None:
    key, _ = written_table
    response = http.get(f"/table/full/{key}", params={"format": "png"})
    assert response.status_code == 406
    supported = ", ".join(formats.TABLE_SERIALIZERS)
    assert response.json()["detail"] == f"{NONE_SUPPORTED}{supported}. Requested: png."
