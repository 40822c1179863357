"""What the owner is told about their customers and cash (credit limits), beside the pages."""
