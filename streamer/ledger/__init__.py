"""The ledger: closed days as immutable Delta Lake tables (docs/LEDGER.md).

| module | job |
| --- | --- |
| ``schemas`` | table names, explicit Arrow schemas, Delta table settings |
| ``model`` | one closed (day, partition): checked input, derived counts, totals |
| ``writer`` | appending a close exactly once per table (Delta application transactions) |
| ``closing`` | closing a partition's days in order from the pipeline's ``DaySource`` |
| ``reader`` | date-range answers in the API's shapes (DuckDB, synchronous) |
| ``audit`` | ``status`` and ``verify`` |
| ``cli`` | ``streamer ledger status|verify|close`` |
"""

from streamer.ledger.closing import CloseRun, DaySource, close_days
from streamer.ledger.model import UNATTRIBUTED, CatalogEntry, DayPartition, LedgerInputError
from streamer.ledger.reader import LedgerReader, RangeAnswer, RangeError
from streamer.ledger.writer import (
    CloseResult,
    DayGap,
    DayNotClosable,
    LedgerLocation,
    LedgerOrderError,
    LedgerWriter,
)

__all__ = ["UNATTRIBUTED", "CatalogEntry", "CloseResult", "CloseRun", "DayGap",
           "DayNotClosable", "DayPartition", "DaySource", "LedgerInputError",
           "LedgerLocation", "LedgerOrderError", "LedgerReader", "LedgerWriter",
           "RangeAnswer", "RangeError", "close_days"]
