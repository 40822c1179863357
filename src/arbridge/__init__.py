"""arbridge: accounts receivable for QuickBooks Online and Xero."""

__version__ = "0.1.0"
