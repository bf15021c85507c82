"""The chDB endpoint's request decoding (pure functions; the server itself is tested in integration)."""
from __future__ import annotations

import gzip

import pytest

from chdb_http.protocol import ProtocolError, build_request, decompress, http_status_for, parse_multipart, trailing_format


def test_query_in_body_with_params_settings_and_database():
    r = build_request({"param_uid": "5", "database": "movierecs", "max_threads": "1", "query_id": "q1",
                       "default_format": "JSON", "enable_http_compression": "1"},
                      b"SELECT {uid:UInt32} FORMAT Native")
    assert r.sql == b"SELECT {uid:UInt32} FORMAT Native"
    assert r.params == {"uid": "5"} and r.settings == {"max_threads": "1"}
    assert r.database == "movierecs" and r.query_id == "q1" and r.default_format == "JSON"
    assert r.insert_statement is None


def test_native_insert_splits_statement_and_binary_data():
    data = b"\x02\x01\x01a\x06UInt32\n\x00\x00\x00"
    r = build_request({}, b"INSERT INTO movierecs.t (`a`) FORMAT Native\n" + data)
    assert r.insert_statement == "INSERT INTO movierecs.t (`a`)" and r.insert_format == "Native"
    assert r.insert_data == data


def test_query_param_plus_body_is_insert_data():
    r = build_request({"query": "INSERT INTO t FORMAT TabSeparated"}, b"1\tx\n")
    assert r.insert_statement == "INSERT INTO t" and r.insert_data == b"1\tx\n"


def test_insert_select_is_a_plain_query():
    r = build_request({}, b"INSERT INTO t SELECT * FROM s")
    assert r.insert_statement is None


def test_empty_query_is_a_client_error():
    with pytest.raises(ProtocolError) as ei:
        build_request({}, b"  ")
    assert http_status_for(ei.value.code) == 400


def test_decompress():
    assert decompress(gzip.compress(b"abc"), "gzip") == b"abc"
    assert decompress(b"abc", None) == b"abc"
    lz4 = pytest.importorskip("lz4.frame")
    assert decompress(lz4.compress(b"xyz" * 100), "lz4") == b"xyz" * 100
    with pytest.raises(ProtocolError, match="Unknown HTTP compression"):
        decompress(b"abc", "snappy")
    with pytest.raises(ProtocolError, match="Cannot decompress"):
        decompress(b"not gzip", "gzip")


def test_multipart_form():
    body = (b"--XX\r\nContent-Disposition: form-data; name=\"query\"\r\n\r\nSELECT {a:UInt8}\r\n"
            b"--XX\r\nContent-Disposition: form-data; name=\"param_a\"\r\n\r\n7\r\n--XX--\r\n")
    form = parse_multipart(body, "multipart/form-data; boundary=XX")
    r = build_request({}, b"", form)
    assert r.sql == b"SELECT {a:UInt8}" and r.params == {"a": "7"}


def test_trailing_format_and_status_codes():
    assert trailing_format("SELECT 1\n FORMAT Native") == "Native"
    assert trailing_format("SELECT 'FORMAT x' AS f") is None
    assert trailing_format("SELECT 1 FORMAT JSON SETTINGS max_threads = 1") == "JSON"
    assert trailing_format("SELECT format FROM t") is None
    assert trailing_format("SELECT 1 -- FORMAT JSON") is None
    assert trailing_format("SELECT 'a' FORMAT CSV;") == "CSV"
    assert http_status_for(60) == 404 and http_status_for(62) == 400 and http_status_for(999) == 500


def test_parse_set():
    from chdb_http.protocol import parse_set

    assert parse_set("SET max_threads = 1, date_time_input_format='best_effort'") == {
        "max_threads": "1", "date_time_input_format": "best_effort"}
    assert parse_set("SELECT 1") is None
    assert parse_set("SET ROLE admin") is None
    assert parse_set("set x = 'it\\'s';") == {"x": "it's"}
    with pytest.raises(ProtocolError):
        parse_set("SET = 1")
