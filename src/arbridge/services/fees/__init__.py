"""Late fees and interest: the daily assessment, the owner's waivers and exemptions, and each
charge's own invoice in the ledger, written through the outbox."""
