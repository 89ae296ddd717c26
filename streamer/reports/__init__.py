"""Royalty statements and DDEX DSR reports from the ledger's closed days
(docs/STATEMENTS.md).

| module | job |
| --- | --- |
| ``money`` | ISO 4217 minor units, exact rounding rules (half-even lines, largest remainder) |
| ``rates`` | rate cards (TOML): rates, pools, levies; validation; which entry prices a line |
| ``parties`` | the party registry (TOML): names, DPIDs, DSR recipients, the sender |
| ``source`` | a period of the ledger at pinned table versions; refusing open days |
| ``pricing`` | statement lines and their amounts (DuckDB, exact integers) |
| ``statements`` | per-holder CSV and JSON summary, the run manifest |
| ``dsr`` | DDEX DSR flat files, UGC profile 1.2 |
| ``explain`` | how one line's figure came from ledger rows |
| ``cli`` | ``streamer report statements|dsr|explain`` (``register(subparsers)``) |
"""
