"""Messages to customers and owners: one sender with a channel interface (email now)."""
