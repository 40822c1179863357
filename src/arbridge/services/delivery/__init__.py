"""Invoice delivery: invoices issued but never sent go to their customers, once each, through the
ledger's own send (so the ledger records it) or, where the ledger cannot, as arbridge's own
email with the pay link; and, when the owner chooses, every new invoice the day it appears."""
