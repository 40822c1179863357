"""The receivables model: one schema for QuickBooks, Xero and the demo ledger.

Every synced row carries (company_id, source, source_id) and upserts on it. Amounts are integer
minor units of the row's currency (exact in every database; `Money` converts); exchange rates are
exact decimal text. Times are aware UTC; `*_on` columns are calendar dates.

One module per domain, every name importable from here: `base` (types, the declarative base),
`companies` (companies, people, jobs, the activity log), `connections` (ledger and Stripe
connections, sync cursors and errors, API call budgets, webhooks), `receivables` (customers,
contacts, invoices, payments, credit notes), `outbox`, `reminders`, `collected` (payment
links and the payments arbridge collects), `plans` (installment plans) and `fees` (late fees
and interest).
"""

from arbridge.sync.model.base import (
    CONNECTION_STATUSES,
    DOCUMENT_STATUSES,
    EVENT_STATUSES,
    INVOICE_STATUSES,
    NAMING,
    OUTBOX_STATUSES,
    PAYMENT_PROVIDERS,
    PROVIDERS,
    Base,
    DecimalText,
    SyncedRow,
    UTCDateTime,
)
from arbridge.sync.model.collected import (
    COLLECTED_STATUSES,
    CheckoutSessionRow,
    CollectedAllocation,
    CollectedPayment,
    PayToken,
)
from arbridge.sync.model.companies import (
    Activity,
    Company,
    CompanyJob,
    InsightSnapshot,
    InsightVersion,
    InstanceMeta,
    Invitation,
    SignInToken,
    User,
)
from arbridge.sync.model.connections import (
    ApiCall,
    ApiTenant,
    Connection,
    OAuthGrant,
    StripeCheck,
    SyncCursor,
    SyncError,
    WebhookDelivery,
    WebhookEvent,
)
from arbridge.sync.model.fees import ASSESSMENT_STATUSES, FEE_KINDS, LateFeeAssessment
from arbridge.sync.model.outbox import OutboxMessage
from arbridge.sync.model.plans import (
    INSTALLMENT_STATUSES,
    LIVE_PLAN_STATUSES,
    PLAN_STATUSES,
    Plan,
    PlanInstallment,
    PlanInvoice,
)
from arbridge.sync.model.receivables import (
    CONTACT_CHANNELS,
    Contact,
    CreditNote,
    Customer,
    Invoice,
    OpenInvoiceDay,
    Payment,
    PaymentAllocation,
)
from arbridge.sync.model.reminders import (
    HOLD_KINDS,
    REMINDER_STATUSES,
    CallTask,
    CustomerReminderSettings,
    InvoiceHold,
    MailMessage,
    ReminderSend,
    SmsAccount,
    SmsReply,
)

__all__ = [
    "ASSESSMENT_STATUSES",
    "COLLECTED_STATUSES",
    "CONNECTION_STATUSES",
    "CONTACT_CHANNELS",
    "DOCUMENT_STATUSES",
    "EVENT_STATUSES",
    "FEE_KINDS",
    "HOLD_KINDS",
    "INSTALLMENT_STATUSES",
    "INVOICE_STATUSES",
    "LIVE_PLAN_STATUSES",
    "NAMING",
    "OUTBOX_STATUSES",
    "PAYMENT_PROVIDERS",
    "PLAN_STATUSES",
    "PROVIDERS",
    "REMINDER_STATUSES",
    "Activity",
    "ApiCall",
    "ApiTenant",
    "Base",
    "CallTask",
    "CheckoutSessionRow",
    "CollectedAllocation",
    "CollectedPayment",
    "Company",
    "CompanyJob",
    "Connection",
    "Contact",
    "CreditNote",
    "Customer",
    "CustomerReminderSettings",
    "DecimalText",
    "InsightSnapshot",
    "InsightVersion",
    "InstanceMeta",
    "Invitation",
    "Invoice",
    "InvoiceHold",
    "LateFeeAssessment",
    "MailMessage",
    "OAuthGrant",
    "OpenInvoiceDay",
    "OutboxMessage",
    "PayToken",
    "Payment",
    "PaymentAllocation",
    "Plan",
    "PlanInstallment",
    "PlanInvoice",
    "ReminderSend",
    "SignInToken",
    "SmsAccount",
    "SmsReply",
    "StripeCheck",
    "SyncCursor",
    "SyncError",
    "SyncedRow",
    "UTCDateTime",
    "User",
    "WebhookDelivery",
    "WebhookEvent",
]
