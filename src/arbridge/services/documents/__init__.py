"""Documents a business sends on paper or as a PDF: the customer statement, the final-notice
letter and the agency case file. `pdf` only renders plain values; `gather` reads what they show
from the database in a few queries. No other service is imported here: reminders attach these
documents to their emails, and the web serves them for download."""
