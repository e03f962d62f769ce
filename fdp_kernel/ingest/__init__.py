"""Ingest: load CSV, Parquet and FHIR R4 extracts into a node store.

``ingest`` checks every row (types, code lists, NHS numbers, dates, references), loads the
good ones and quarantines the rest with their reasons and source lines, in one transaction
per run, audited. See docs/ingest.md.
"""

from fdp_kernel.ingest.mapping import SourceMapping, load_mapping
from fdp_kernel.ingest.quarantine import export as export_quarantine
from fdp_kernel.ingest.quarantine import summary as quarantine_summary
from fdp_kernel.ingest.report import FileReport, IngestReport
from fdp_kernel.ingest.run import DEFAULT_BATCH_ROWS, ingest

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "FileReport",
    "IngestReport",
    "SourceMapping",
    "export_quarantine",
    "ingest",
    "load_mapping",
    "quarantine_summary",
]
