"""Basket importers: records produced per format, bad rows refused with their line."""
import pytest

from infra.importers import FORMATS
from infra.importers.baskets import read_basket_lines, read_baskets, read_catalog
from schemas.errors import InvalidEvent


def test_registered():
    assert {"baskets", "basket-lines", "catalog"} <= set(FORMATS)


def test_baskets_announce_items_then_purchases(tmp_path):
    f = tmp_path / "g.csv"
    f.write_text("whole milk,tropical fruit\ntropical fruit,!!!\n")
    recs = list(read_baskets(f))
    bad = [r for r in recs if isinstance(r, InvalidEvent)]
    assert len(bad) == 1 and "line 2" in bad[0].reason
    good = [r for r in recs if not isinstance(r, InvalidEvent)]
    assert [(t, k) for t, k, _ in good] == [("catalog", "whole_milk"), ("interactions", "b1"),
                                          ("catalog", "tropical_fruit"), ("interactions", "b1"), ("interactions", "b2")]
    assert good[0][2]["title"] == "whole milk" and good[0][2]["category"] == "milk"
    ev = good[1][2]
    assert ev["type"] == "purchase" and ev["context"]["basket_id"] == "b1" and ev["event_id"] == "bk-b1-whole_milk"


def test_basket_lines(tmp_path):
    f = tmp_path / "l.csv"
    f.write_text("basket_id,item_id,user_id,segment,timestamp,qty\n"
                 "o1,SKU-1,u7,plumber,2026-01-01T00:00:00Z,2\n"
                 "o1,SKU 2,u7,plumber,5,1\n"
                 "o2,SKU-3,,,,1\n"
                 "o3,SKU-4,,,yesterday,1\n")
    recs = list(read_basket_lines(f))
    good = [r for r in recs if not isinstance(r, InvalidEvent)]
    bad = [r.reason for r in recs if isinstance(r, InvalidEvent)]
    assert len(good) == 2 and len(bad) == 2 and "line 3" in bad[0] and "line 5" in bad[1]
    first = good[0][2]
    assert (first["user_id"], first["context"]["profession"], first["ts"]) == ("u7", "plumber", "2026-01-01T00:00:00Z")
    assert good[1][1] == "o2"  # no user: the basket stands in
    f.write_text("order,item\n1,2\n")
    with pytest.raises(InvalidEvent, match="basket_id"):
        list(read_basket_lines(f))


def test_catalog(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("item_id,title,category,private_label\nscrews,Wood screws,fixings,1\nglue,Glue,,no\nx,X,,maybe\n")
    recs = list(read_catalog(f))
    assert recs[0][:2] == ("catalog", "screws") and recs[0][2]["title"] == "Wood screws"
    assert recs[0][2]["private_label"] is True and recs[1][2]["category"] is None
    assert isinstance(recs[2], InvalidEvent) and "line 4" in recs[2].reason
