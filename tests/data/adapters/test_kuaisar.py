"""KuaiSAR adapter on a fixture in KuaiSAR's raw CSV format (zipped like the zenodo archive)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from lemur.cli import main
from lemur.data.adapters import kuaisar
from lemur.data.schema import SchemaError, validate_dataset

T0 = 1_684_742_000_000  # 2023-05-22 ~15:53 Beijing time, ms
MIN = 60_000

SRC = (
    "user_id,search_session_id,search_session_time,search_session_timestamp,keyword,search_source,item_id,click_cnt,item_type\n"
    f'1,100,2023-05-22 15:53:20,{T0},"[20, 34, 3]",USER_INPUT,5001,1,VIDEO\n'
    f'1,100,2023-05-22 15:53:20,{T0},"[20, 34, 3]",USER_INPUT,5002,0,VIDEO\n'
    f'1,100,2023-05-22 15:53:20,{T0},"[20, 34, 3]",USER_INPUT,9001,0,LIVE\n'  # no item features
    f'2,101,2023-05-22 16:10:00,{T0 + 17 * MIN},"[7]",HISTORY,5003,0,VIDEO\n'  # a session without clicks
    f'2,101,2023-05-22 16:10:00,{T0 + 17 * MIN},"[7]",HISTORY,5001,0,VIDEO\n'
    f"1,102,2023-05-23 09:00:00,{T0 + 17 * 60 * MIN},[],USER_INPUT,5003,2,VIDEO\n"  # empty keyword list
)
REC = (
    "user_id,item_id,playing_time,duration_ms,time,timestamp,click,forward,like,follow,search,search_item_related\n"
    # float timestamps like the real file
    f"1,5002,60792.0,45400.0,2023-05-22 15:00:00,{T0 - 50 * MIN:.6e},1,0,0,0,0,0\n"
    f"1,5003,1000.0,45400.0,2023-05-22 15:10:00,{T0 - 40 * MIN:.6e},0,0,0,0,0,0\n"
    f"2,5001,0.0,30000.0,2023-05-22 15:20:00,{T0 - 30 * MIN:.6e},1,0,1,0,1,1\n"
    f"3,5002,0.0,30000.0,2023-05-23 10:00:00,{T0 + 18 * 60 * MIN:.6e},0,0,0,0,0,0\n"
)
ITEMS = (
    "item_id,caption,author_id,item_type,upload_time,upload_type,first_level_category_id,first_level_category_name,"
    "first_level_category_name_en,second_level_category_id,second_level_category_name,second_level_category_name_en,"
    "third_level_category_id,third_level_category_name,third_level_category_name_en,fourth_level_category_id,"
    "fourth_level_category_name,fourth_level_category_name_en\n"
    '5001,"[1, 213, 24]",10,NORMAL,2023-04-22,LongImport,9,搞笑,Funny,136,搞笑段子,Funny joke,0,空,empty,0,空,empty\n'
    "5002,[],11,NORMAL,1970-01-01,ShortImport,3,美食,Food,0,空,empty,0,空,empty,0,空,empty\n"
    '5003,"[5, 6]",12,NORMAL,2023-05-01,LongImport,0,空,empty,0,空,empty,0,空,empty,0,空,empty\n'
)
USERS = (
    "user_id,search_active_level,rec_active_level,onehot_feat1,onehot_feat2\n"
    "1,2,3,0,7\n2,1,1,2,0\n"
)  # user 3 has no features


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    root = tmp_path / "raw"
    root.mkdir()
    with zipfile.ZipFile(root / "KuaiSAR.zip", "w") as zf:
        for name, text in {
            "src_inter.csv": SRC,
            "rec_inter.csv": REC,
            "item_features.csv": ITEMS,
            "user_features.csv": USERS,
            "social_network.csv": "user_id,user_follow_id\n1,2\n",
        }.items():
            zf.writestr(f"KuaiSAR_final/{name}", text)
    return root


def quiet(*_args) -> None:
    pass


def test_convert(raw: Path, tmp_path: Path) -> None:
    summary = kuaisar.convert(raw, tmp_path / "out", log=quiet)
    docs, events = validate_dataset(tmp_path / "out")
    rows = events.to_pylist()
    assert summary["search_rows"] == 6 and summary["rec_rows"] == 4 and len(rows) == 10
    search = [r for r in rows if r["cat_service"] == 2]
    rec = [r for r in rows if r["cat_service"] == 1]
    # search sessions keep their IDs' grouping, the keyword becomes the query, click_cnt > 0 the label
    first = [r for r in search if r["user_id"] == 1 and r["timestamp"] == T0]
    assert len({r["session_id"] for r in first}) == 1 and {r["query"] for r in first} == {"20 34 3"}
    assert sorted((r["doc_id"], r["label"]) for r in first) == [(5001, 1), (5002, 0), (9001, 0)]
    assert [r["query"] for r in search if r["doc_id"] == 5003 and r["user_id"] == 1] == [""]  # "[]"
    assert [r["label"] for r in search if r["doc_id"] == 5003 and r["user_id"] == 1] == [1]  # click_cnt 2
    # recommendation rows: no query, 30-minute clock sessions, label = click
    assert all(r["query"] == "" for r in rec)
    u1 = [r for r in rec if r["user_id"] == 1]
    assert len({r["session_id"] for r in u1}) == 1 and {r["timestamp"] for r in u1} == {T0 - 50 * MIN}
    assert sorted(r["label"] for r in rec) == [0, 0, 1, 1]
    # session ids follow time; rec and search never share a session
    assert len({r["session_id"] for r in rows}) == 6
    by_session = sorted({(r["timestamp"], r["session_id"]) for r in rows})
    assert [s for _, s in by_session] == sorted(s for _, s in by_session)
    # documents: captions as word-ID text, English category names without "empty", item type for unknown items
    d = {r["doc_id"]: r for r in docs.to_pylist()}
    assert d[5001]["title"] == "1 213 24" and d[5001]["cover_text"] == "Funny Funny joke"
    assert d[5002]["title"] is None and d[5002]["cover_text"] == "Food"
    assert d[5003]["cover_text"] is None
    assert d[9001]["title"] is None and d[9001]["cover_text"] == "live" and summary["items_without_features"] == 1
    # context: search source codes and user features (+1; 0 = unknown user)
    assert {r["cat_search_source"] for r in rec} == {0} and {r["cat_search_source"] for r in search} == {1, 2}
    u1row = next(r for r in rows if r["user_id"] == 1)
    assert (
        u1row["cat_search_active_level"],
        u1row["cat_rec_active_level"],
        u1row["cat_onehot_feat1"],
        u1row["cat_onehot_feat2"],
    ) == (3, 4, 1, 8)
    assert {r["cat_onehot_feat2"] for r in rows if r["user_id"] == 3} == {0}
    # Beijing-time days: 2023-05-22 and 2023-05-23
    assert {r["day"] for r in rows} == {0, 1}


def test_search_only(raw: Path, tmp_path: Path) -> None:
    summary = kuaisar.convert(raw, tmp_path / "out", services=("search",), log=quiet)
    _, events = validate_dataset(tmp_path / "out")
    assert summary["rec_rows"] == 0 and events.num_rows == 6
    with pytest.raises(ValueError, match="services"):
        kuaisar.convert(raw, tmp_path / "x", services=("ads",), log=quiet)


def test_missing_column_named(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    root.mkdir()
    (root / "src_inter.csv").write_text(SRC.replace("click_cnt", "clicks"))
    with pytest.raises(SchemaError, match=r"src_inter.csv: column 'click_cnt': column missing"):
        kuaisar.convert(root, tmp_path / "out", services=("search",), log=quiet)


def test_cli(raw: Path, tmp_path: Path, capsys) -> None:
    assert main(["data", "kuaisar", "--raw", str(raw), "--out", str(tmp_path / "out"), "--services", "search,rec"]) == 0
    printed = capsys.readouterr().out
    assert "10 rows" in printed and "1 items have no row in item_features.csv" in printed
