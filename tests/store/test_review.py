"""Review-side SQL on a real demo store: paging, filters, search, actions, dashboard."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from edge_ocr.store import corrections, dashboard, review
from edge_ocr.store.corrections import VerdictOutcome
from edge_ocr.store.db import open_connection
from edge_ocr.store.demo import build_demo_store
from edge_ocr.store.review import ResultFilter, ReviewError, Sort, SortColumn


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("review") / "results.db"
    report = build_demo_store(db, 1500, seed=1, pool_size=4, days=5)
    assert report.rows == 1500
    return db


@pytest.fixture
def conn(demo_db: Path, tmp_path: Path):
    db = tmp_path / "copy.db"
    db.write_bytes(demo_db.read_bytes())
    c = open_connection(db)
    yield c
    c.close()


def test_demo_store_is_realistic(conn: sqlite3.Connection) -> None:
    assert conn.execute("SELECT count(*) FROM results").fetchone()[0] == 1500
    assert (
        conn.execute(
            "SELECT count(*) FROM results r LEFT JOIN captures c ON c.id = r.capture_id WHERE c.id IS NULL"
        ).fetchone()[0]
        == 0
    )
    verdicts = dict(conn.execute("SELECT verdict, count(*) FROM results GROUP BY verdict").fetchall())
    assert set(verdicts) == {"pass", "fail", "unreadable"} and verdicts["pass"] > verdicts["fail"] > 0
    states = {r[0] for r in conn.execute("SELECT DISTINCT review_state FROM results")}
    assert states == set(review.REVIEW_STATES)
    assert len(review.filter_choices(conn).sources) == 3
    image = conn.execute("SELECT stored_image FROM captures LIMIT 1").fetchone()[0]
    assert Path(image).is_file()
    lines = json.loads(conn.execute("SELECT lines FROM results WHERE n_lines > 0 LIMIT 1").fetchone()[0])
    assert len(lines[0]["box"]) == 4


@pytest.mark.parametrize("column", list(SortColumn))
@pytest.mark.parametrize("descending", [True, False])
def test_pages_cover_every_row_once_in_order(
    conn: sqlite3.Connection, column: SortColumn, descending: bool
) -> None:
    sort = Sort(column, descending)
    flt = ResultFilter(verdicts=("pass", "fail"))
    total = review.count_results(conn, flt)
    pages = [review.fetch_page(conn, flt, sort, offset=o, limit=200) for o in range(0, total, 200)]
    ids = [r.id for p in pages for r in p]
    assert len(ids) == len(set(ids)) == total
    for probe in (ids[0], ids[len(ids) // 2], ids[-1]):
        assert review.row_position(conn, flt, sort, probe) == ids.index(probe)
    if column in review.KEYSET_COLUMNS:
        keyset, last = [], None
        while True:
            page = review.fetch_page_after(conn, flt, sort, after=last, limit=200)
            keyset += [r.id for r in page]
            if len(page) < 200:
                break
            last = page[-1]
        assert keyset == ids


def test_filters(conn: sqlite3.Connection) -> None:
    flt = ResultFilter(
        verdicts=("fail",), review_states=("unreviewed",), min_confidence=0.5, sources=("camera:line1",),
        recipes=("lot-exp",), since="2000-01-01", until="2100-01-01",
    )  # fmt: skip
    rows = review.fetch_page(conn, flt, limit=1000)
    assert rows and len(rows) == review.count_results(conn, flt)
    assert all(r.verdict == "fail" and r.review_state == "unreviewed" and r.confidence >= 0.5 for r in rows)
    assert all(r.source == "camera:line1" and r.recipe == "lot-exp" for r in rows)
    with pytest.raises(ValueError):
        ResultFilter(verdicts=("maybe",))


def test_search_is_safe_and_matches_prefixes(conn: sqlite3.Connection) -> None:
    assert review.fts_query('LOT "x* OR') == '"LOT"* "x"* "OR"*'
    assert review.count_results(conn, ResultFilter(search='")(*')) == 0
    n = review.count_results(conn, ResultFilter(search="LO"))
    assert (
        n
        == conn.execute(
            "SELECT count(*) FROM results WHERE text LIKE '%LO%' OR corrected_text LIKE '%LO%'"
        ).fetchone()[0]
        or n > 0
    )


def test_correction_is_one_transaction_with_audit_and_outbox(conn: sqlite3.Connection) -> None:
    rid = review.fetch_page(conn, ResultFilter(review_states=("unreviewed",)), limit=1)[0].id
    calls = []

    def evaluate(recipe, lines):
        calls.append((recipe, [line.text for line in lines]))
        return VerdictOutcome("pass", (), {"lot": "X"})

    detail = corrections.correct_line(conn, rid, 0, "  Quokka Zebra  ", by="tester", evaluate=evaluate)
    assert detail.lines[0].text == "Quokka Zebra" and detail.lines[0].raw_text
    assert detail.review_state == "corrected" and detail.verdict == "pass" and detail.reviewed_by == "tester"
    assert detail.corrected_text.startswith("Quokka Zebra") and detail.corrections[-1].by == "tester"
    assert calls and calls[0][1][0] == "Quokka Zebra"
    assert review.fetch_page(conn, ResultFilter(search="quokka"))[0].id == rid  # FTS follows
    assert conn.execute("SELECT count(*) FROM events WHERE kind = 'result.corrected'").fetchone()[0] == 1
    (payload,) = conn.execute("SELECT payload FROM outbox WHERE kind = 'correction'").fetchone()
    assert json.loads(payload)["after"] == "Quokka Zebra"
    # the same text again changes nothing
    corrections.correct_line(conn, rid, 0, "Quokka Zebra", by="tester")
    assert conn.execute("SELECT count(*) FROM corrections WHERE result_id = ?", (rid,)).fetchone()[0] == 1
    with pytest.raises(ReviewError):
        corrections.correct_line(conn, rid, 99, "x", by="tester")
    assert not conn.in_transaction


def test_failing_evaluator_rolls_everything_back(conn: sqlite3.Connection) -> None:
    rid = review.fetch_page(conn, limit=1)[0].id

    def broken(recipe, lines):
        raise RuntimeError("rules crashed")

    with pytest.raises(RuntimeError):
        corrections.correct_line(conn, rid, 0, "new", by="t", evaluate=broken)
    assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM corrections WHERE result_id = ?", (rid,)).fetchone()[0] == 0


def test_accept_reject_and_next_unreviewed(conn: sqlite3.Connection) -> None:
    flt, sort = ResultFilter(), Sort()
    first = review.next_unreviewed(conn, flt, sort, None)
    second = review.next_unreviewed(conn, flt, sort, first)
    assert first != second
    assert corrections.set_review_state(conn, first, "accepted", by="t").review_state == "accepted"
    assert corrections.set_review_state(conn, second, "rejected", by="t").review_state == "rejected"
    assert review.next_unreviewed(conn, flt, sort, None) not in (first, second)
    assert conn.execute("SELECT count(*) FROM outbox WHERE kind = 'review'").fetchone()[0] == 2
    with pytest.raises(ReviewError):
        corrections.set_review_state(conn, first, "corrected", by="t")
    # non-keyset order
    other = review.next_unreviewed(conn, flt, Sort(SortColumn.RECIPE), None)
    assert corrections.load_result(conn, other).review_state == "unreviewed"


def test_dashboard(conn: sqlite3.Connection) -> None:
    data = dashboard.dashboard(conn)
    assert data.total > 0 and len(data.throughput) == 24
    assert sum(n for _, n in data.throughput) == data.total
    assert sum(c.total for _, c in data.per_recipe) == data.total
    assert [name for name, _ in data.per_shift] == ["early", "late", "night"]
    assert data.sync.pending_batches == 0 and data.agents == ()


def test_demo_store_command_needs_no_qt(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, argparse; from pathlib import Path; from edge_ocr.commands import demo_store as d; "
        f"d.run(argparse.Namespace(rows=20, db=Path({str(tmp_path / 'd.db')!r}), seed=0, pool=2, days=1.0)); "
        "assert not any(m.startswith('PySide6') for m in sys.modules), 'demo-store imported Qt'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "added 20 results" in out.stdout
    assert sqlite3.connect(tmp_path / "d.db").execute("SELECT count(*) FROM results").fetchone()[0] == 20
