"""Getting paid: payment links to Stripe Checkout, and Stripe's events back into the model.

accounts (which Stripe, onboarding, its webhook endpoint), quote (what a link asks for),
checkout, events (verify, store, translate), recording (the state machine), reversals (money
going back or coming back), refunds (the owner's overpayment refunds), simulated (the demo).
"""
