import re
from pathlib import Path

import pytest

from dataengine.errors import UsageError
from dataengine.loaders.symbol_loader import SymbolLoader, clean_symbols


def test_csv_symbol_column_is_cleaned(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("Security,Symbol\nApple,aapl \nBerkshire,BRK-B\nBrown,BF/B\nApple again,AAPL\n")
    assert SymbolLoader.from_csv(path) == ["AAPL", "BRK.B", "BF.B"]


@pytest.mark.parametrize("column", ["symbol", "ticker", "Ticker"])
def test_csv_column_aliases(tmp_path: Path, column: str) -> None:
    path = tmp_path / "list.csv"
    path.write_text(f"{column},name\nMSFT,Microsoft\n")
    assert SymbolLoader.from_csv(path) == ["MSFT"]


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_csv_saved_with_another_delimiter_is_read_by_its_header(tmp_path: Path, delimiter: str) -> None:
    """A spreadsheet in a locale whose decimal mark is a comma saves ``Symbol;Name``: read as a comma CSV it
    was one column, and ``AAPL;APPLE`` went to the server as a symbol."""
    path = tmp_path / "list.csv"
    path.write_text(f"Name{delimiter}Symbol{delimiter}Weight\nApple{delimiter}AAPL{delimiter}6,5\n"
                    f"Berkshire{delimiter}BRK-B{delimiter}1,7\n")
    assert SymbolLoader.from_file(path) == SymbolLoader.from_csv(path) == ["AAPL", "BRK.B"]


def test_a_list_read_the_wrong_way_is_refused_before_any_request(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("AAPL;Apple\nMSFT;Microsoft\n")  # no header: which column holds the symbols is unknown
    with pytest.raises(UsageError, match=r"no Symbol column \(found: AAPL, Apple\)"):
        SymbolLoader.from_file(path)
    with pytest.raises(UsageError, match="invalid symbol.*'AAPL;Apple'"):
        SymbolLoader.from_text_file(path)


def test_text_file_with_comments(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("# my list\naapl\n\nmsft  # big\n")
    assert SymbolLoader.from_text_file(path) == ["AAPL", "MSFT"]
    assert SymbolLoader.from_file(path) == ["AAPL", "MSFT"]


def test_bundled_list_found_by_bare_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    symbols = SymbolLoader.from_file("sp500-2025.csv")
    assert 495 <= len(symbols) <= 510
    assert {"AAPL", "BRK.B", "BF.B", "PLTR"} <= set(symbols)
    assert len(set(symbols)) == len(symbols)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"\x00\x01binary", "binary"), (b"Name,Sector\nApple,IT\n", "no Symbol column"),
     (b"Symbol\n\n", "no symbols")],
)
def test_bad_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        SymbolLoader.from_file(path)


def test_missing_file_lists_bundled(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found.*sp500-2025.csv"):
        SymbolLoader.from_csv(tmp_path / "nope.csv")


def test_from_list_rejects_symbols_that_would_break_a_request() -> None:
    assert SymbolLoader.from_list(["aapl", "msft"]) == ["AAPL", "MSFT"]
    with pytest.raises(UsageError, match="invalid symbol"):
        SymbolLoader.from_list(["AAPL,MSFT"])


def test_a_symbol_begins_with_a_letter_or_a_digit_so_an_option_after_a_double_dash_is_refused() -> None:
    """Found by a user's trial: `dataengine ingest -- -AAPL -t day --days 2 --dry-run` took `-T`, `--DAYS`,
    `--DRY.RUN`... for symbols, and did not dry-run: it fetched 2.6 M bars of `DAY` before failing the rest."""
    with pytest.raises(UsageError, match=r"invalid symbol\(s\) '-AAPL', '--dry-run' \(a symbol never begins with '-'"):
        SymbolLoader.from_list(["-AAPL", "--dry-run", "MSFT"])
    for odd in (".A", "_A", "$A", "^GSPC"):
        with pytest.raises(UsageError, match="invalid symbol"):
            SymbolLoader.from_list([odd])
    assert SymbolLoader.from_list(["brk-b", "1ABC", "A"]) == ["BRK.B", "1ABC", "A"]


def test_a_single_string_is_one_symbol_as_ingest_takes_it() -> None:
    from dataengine.orchestration.request import build_request

    # from_list("AAPL") iterated the string: ['A', 'A', 'P', 'L'] (de-duplicated to A, P, L)
    assert SymbolLoader.from_list("aapl") == ["AAPL"] == list(build_request("aapl", "2024-01-02", "2024-01-05").symbols)
    for refused in (lambda: SymbolLoader.from_list("AAPL,MSFT"), lambda: build_request("AAPL,MSFT", "2024-01-02")):
        with pytest.raises(UsageError, match=r"invalid symbol\(s\) 'AAPL,MSFT' \(one symbol a value: give several as separate arguments"):
            refused()


def test_bundled_lists_are_real_files_identical_to_the_top_level_copies() -> None:
    from pathlib import Path

    from dataengine.loaders.symbol_loader import BUNDLED_LISTS

    top = Path(__file__).resolve().parents[2] / "lists"
    bundled = sorted(p.name for p in BUNDLED_LISTS.iterdir() if p.suffix in (".csv", ".txt"))
    assert bundled and not BUNDLED_LISTS.is_symlink()
    for name in bundled:
        assert (BUNDLED_LISTS / name).read_bytes() == (top / name).read_bytes(), f"{name} drifted between copies"


@pytest.mark.parametrize("symbol", ["AAPL$", "A=B", "A%41", "TAOP:NASDAQ", "ÄPPL", "A'B", 'A"B', "A+", "A^", "A_B",
                                    "BRK..B", "BRK.B.", "BRK-", "A" * 22])
def test_a_character_or_a_form_no_us_ticker_has_is_refused(symbol: str) -> None:
    """Found by a user's trial: AAPL$ was accepted and sent; the rule named what breaks a request or a path,
    and let through what no ticker has ('$', '=' and '%' in a directory name symbol=...)."""
    with pytest.raises(UsageError, match=r"^symbols: invalid symbol\(s\) "):
        clean_symbols(["MSFT", symbol], source="symbols")


def test_a_refused_character_is_named_with_what_a_ticker_is_made_of() -> None:
    with pytest.raises(UsageError, match=r"^symbols: invalid symbol\(s\) 'AAPL\$' \('\$' in no US ticker: letters and "
                       r"digits, a share class after '\.', '-' or '/' as in BRK\.B\)$"):
        clean_symbols(["AAPL$"], source="symbols")


def test_every_spelling_of_a_real_ticker_is_still_accepted() -> None:
    given = ["aapl", "BRK.B", "brk-b", "BRK/B", "BF.B", "1ABC", "SPAC.WS", "GOOGL", "A", "ZVZZT", "A" * 21]
    assert clean_symbols(given) == ["AAPL", "BRK.B", "BF.B", "1ABC", "SPAC.WS", "GOOGL", "A", "ZVZZT", "A" * 21]


def test_a_refused_symbol_says_why_when_its_characters_are_a_tickers() -> None:
    """A user's trial: 'AAPL MSFT' and 'BRK..B' were refused with no reason, where 'AAPL$' had one."""
    with pytest.raises(UsageError, match=r"'AAPL MSFT' \(one symbol a value"):
        SymbolLoader.from_list(["AAPL MSFT"])
    with pytest.raises(UsageError, match=r"'BRK\.\.B' \(a share class is one '\.', '-' or '/' between letters or digits"):
        SymbolLoader.from_list(["BRK..B"])


def test_a_refused_symbol_of_a_file_names_its_line(tmp_path: Path) -> None:
    """A user's trial: in a 500-line list, 'BRK..B' was refused with no line to go to. Lines as an editor numbers
    them: the header counted, and blank lines, comments and a value quoted over two lines too."""
    listing = tmp_path / "sp500.csv"
    listing.write_text('Symbol,Name\nAAPL,Apple\n\n"MSFT","Micro\nsoft"\nBRK..B,Berkshire\n')
    with pytest.raises(UsageError, match=rf"^{re.escape(str(listing))}, line 6: invalid symbol\(s\) 'BRK\.\.B' \(a share"):
        SymbolLoader.from_csv(listing)
    text = tmp_path / "list.txt"
    text.write_text("# mine\r\naapl\r\n\r\nAAPL,MSFT\r\nA$  # typo\r\n")
    with pytest.raises(UsageError, match=rf"^{re.escape(str(text))}, lines 4 and 5: invalid symbol\(s\) 'AAPL,MSFT', 'A\$'"):
        SymbolLoader.from_file(text)


def test_more_than_five_refused_lines_are_cut_as_the_symbols_are(tmp_path: Path) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text("Name;Ticker\n" + "".join(f"n;X{i}$\n" for i in range(8)))
    with pytest.raises(UsageError, match=r", lines 2, 3, 4, 5, 6 and 3 more: invalid symbol\(s\) 'X0\$', .*'X4\$' and 3 more"):
        SymbolLoader.from_file(listing)
