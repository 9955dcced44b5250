"""ragsync: keeps a Qdrant index equal to what a CMS has published."""

__version__ = "0.1.0"
