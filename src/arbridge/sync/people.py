"""Who belongs to a company: signing in with a ledger's identity (QuickBooks now, Xero later),
the owner's invitations, and the session version that signing out bumps.

The rules for a ledger sign-in, the same for every provider (the caller has already proved that
the new grant reads the tenant named in the callback, e.g. QuickBooks' CompanyInfo for that
realm; a tenant id from the query string alone proves nothing):

1. A tenant already attached to one company is never attached to another.
2. Nobody joins an existing company by signing in with the ledger, even with a genuine grant for
   its tenant: an existing company gains users only by its owner's invitation (emailed link,
   expiring, used once).
3. Signing in with a known ledger identity signs that user in to their own company (the one
   holding the tenant, when the person owns several: one Xero consent may start several
   companies, each with a user row of this identity).
4. With nobody signed in and an unknown identity, a tenant attached to no company starts a new
   company with this person as its owner.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from arbridge.clock import Clock
from arbridge.errors import ArbridgeError, NotFound
from arbridge.sync.activity import log_activity
from arbridge.sync.model import Company, Connection, Invitation, OutboxMessage, User
from arbridge.sync.outbox import enqueue
from arbridge.sync.store import hash_token

INVITATION_DAYS = 7
log = logging.getLogger(__name__)

# What each role may do on the owner pages (web/common.py enforces it on every POST):
# an owner everything; a collector works calls and replies (logs a call's outcome, resolves a
# hold or reply) and reads the rest; a viewer reads every page and changes nothing.
ROLES = ("owner", "collector", "viewer")
ROLE_LABELS = {
    "owner": "Owner: everything",
    "collector": "Collector: works calls and replies, reads the rest",
    "viewer": "Viewer: reads everything, changes nothing",
}


class SignInRefused(ArbridgeError):
    """A ledger sign-in the rules refuse. `title` and the message are shown to the visitor."""

    def __init__(self, title: str, message: str, status: int) -> None:
        super().__init__(message)
        self.title = title
        self.status = status


def tenant_taken(provider_name: str) -> SignInRefused:
    return SignInRefused(
        f"This {provider_name} company is already connected to another arbridge company",
        f"A {provider_name} company can be connected to one arbridge company only. "
        "Disconnect it there first, or sign in to that company instead.",
        409,
    )


@dataclass(frozen=True)
class LedgerIdentity:
    """What the provider proved: its user (OpenID `sub`) and the tenant the grant reads."""

    provider: str  # "quickbooks", "xero"
    provider_name: str  # "QuickBooks", "Xero"
    tenant_id: str
    subject: str
    email: str
    name: str | None


def _tenant_company(session: Session, who: LedgerIdentity) -> int | None:
    return session.scalar(
        select(Connection.company_id).where(
            Connection.provider == who.provider, Connection.tenant_id == who.tenant_id
        )
    )


def user_for_ledger_sign_in(
    session: Session, clock: Clock, who: LedgerIdentity, signed_in: User | None
) -> User | None:
    """The user this sign-in is for, or None when it may start a new company (rule 4).
    Raises SignInRefused under rules 1 and 2."""
    attached_to = _tenant_company(session, who)
    knowns = identity_users(session, who.provider, who.subject)
    known = next((u for u in knowns if u.company_id == attached_to), knowns[0] if knowns else None)
    user = signed_in or known
    if user is None:
        if attached_to is not None:
            raise SignInRefused(
                f"This {who.provider_name} company is already connected to arbridge",
                f"Your {who.provider_name} sign-in cannot add you to it. Ask its owner to send "
                "you an invitation from Settings, then open the link in the email.",
                403,
            )
        return None
    if attached_to is not None and attached_to != user.company_id:
        raise tenant_taken(who.provider_name)
    if signed_in is not None:
        link_identity(session, clock, signed_in, who)
    return user


def link_identity(session: Session, clock: Clock, user: User, who: LedgerIdentity) -> bool:
    """An invited user (signed in by the invitation link) links their ledger identity, so that
    signing in with the ledger finds them; never over another identity, nor twice in a company.
    True when it was linked now."""
    if user.identity_subject is not None:
        return False
    twin = session.scalar(
        select(User.id).where(
            User.company_id == user.company_id,
            User.identity_provider == who.provider,
            User.identity_subject == who.subject,
        )
    )
    if twin is not None:
        return False
    user.identity_provider, user.identity_subject = who.provider, who.subject
    session.flush()
    log_activity(
        session,
        clock,
        user.company_id,
        "user.identity_linked",
        f"{user.email} can now sign in with {who.provider_name}",
    )
    return True


def identity_users(session: Session, provider: str, subject: str) -> list[User]:
    """Every user row of one ledger identity: one per company the person belongs to."""
    return list(
        session.scalars(
            select(User)
            .where(User.identity_provider == provider, User.identity_subject == subject)
            .order_by(User.id)
        )
    )


def companies_of(session: Session, user: User) -> list[tuple[User, Company]]:
    """The companies this user's ledger identity also belongs to (theirs first): what the
    company switcher offers. Nobody without a ledger identity has more than one."""
    if not user.identity_provider or not user.identity_subject:
        company = session.get(Company, user.company_id)
        return [(user, company)] if company is not None else []
    rows = session.execute(
        select(User, Company)
        .join(Company, Company.id == User.company_id)
        .where(
            User.identity_provider == user.identity_provider,
            User.identity_subject == user.identity_subject,
        )
        .order_by(Company.name, Company.id)
    ).all()
    return sorted(((u, c) for u, c in rows), key=lambda row: row[0].id != user.id)


def new_owner(session: Session, clock: Clock, company: Company, who: LedgerIdentity) -> User:
    """Rule 4: the owner of a company just created from this sign-in."""
    user = session.scalar(select(User).where(User.company_id == company.id).order_by(User.id))
    if user is None:
        user = User(company_id=company.id, email=who.email, created_at=clock.now())
        session.add(user)
    user.identity_provider, user.identity_subject = who.provider, who.subject
    user.name = who.name or user.name
    session.flush()
    log_activity(
        session,
        clock,
        company.id,
        "owner.signed_up",
        f"{who.email} signed up with {who.provider_name}",
    )
    return user


# ---------------------------------------------------------------------------------------------
# Invitations.


def company_owner(session: Session, company_id: int) -> User | None:
    """The company's first owner (the one who created it, unless they handed it on): the one
    the owner's emails go to."""
    return session.scalar(
        select(User)
        .where(User.company_id == company_id, User.role == "owner")
        .order_by(User.id)
        .limit(1)
    )


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ArbridgeError(f"choose a role: {', '.join(ROLES)}")
    return role


def invite(
    session: Session,
    clock: Clock,
    company: Company,
    by: User,
    email: str,
    role: str = "viewer",
) -> Invitation:
    """Queue the invitation email (outbox kind "email"); only the link's hash is kept here.
    The invitee gets `role` on accepting."""
    _require_owner(session, company, by)
    role = _check_role(role)
    email = email.strip()
    taken = session.scalar(
        select(User.id).where(User.company_id == company.id, User.email == email)
    )
    if taken is not None:
        raise ArbridgeError(f"{email} can already sign in to {company.name}")
    now = clock.now()
    # Inviting an address again sends a fresh invitation in place of the one waiting (two
    # were listed, and the other stayed "waiting" once one was accepted).
    _withdraw_waiting(session, company.id, email, now)
    row = Invitation(
        company_id=company.id,
        email=email,
        invited_by=by.id,
        role=role,
        # A random hash nobody has the token for: the link is made as the email goes out
        # (`mint_invitation_link`), so no token ever sits in the outbox.
        token_hash=secrets.token_hex(32),
        created_at=now,
        expires_at=now + timedelta(days=INVITATION_DAYS),
    )
    session.add(row)
    session.flush()
    enqueue(
        session,
        clock,
        company_id=company.id,
        kind="email",
        key=f"invitation:{row.id}",
        payload={
            "mail": "invitation",
            "invitation_id": row.id,
            "to": email,
            "subject": f"{by.name or by.email} invited you to {company.name} on arbridge",
            "text": (
                f"{by.name or by.email} invited you to see {company.name}'s receivables on "
                f"arbridge.\n\nAccept the invitation here (the link works once and expires in "
                f"{INVITATION_DAYS} days):\n\n{LINK_MARK}\n\n"
                "If you did not expect this email, ignore it: nothing happens unless you accept."
            ),
        },
    )
    log_activity(
        session,
        clock,
        company.id,
        "user.invited",
        f"{email} was invited as {role} by {by.email}",
    )
    return row


LINK_MARK = "[invitation link]"  # in a queued invitation's text, where its link goes


def mint_invitation_link(
    session: Session, clock: Clock, invitation_id: int, base_url: str
) -> str | None:
    """The invitation's link, made as its email goes out (a retry makes a fresh one and the
    earlier stops working). None when the invitation was revoked, used or has expired."""
    row = session.get(Invitation, invitation_id, with_for_update=True)
    if (
        row is None
        or row.accepted_at is not None
        or row.revoked_at is not None
        or row.expires_at <= clock.now()
    ):
        return None
    token = secrets.token_urlsafe(32)
    row.token_hash = hash_token(token)
    return f"{base_url.rstrip('/')}/invitations/{token}"


def find_invitation(session: Session, clock: Clock, token: str) -> Invitation:
    if not token or len(token) > 200:
        raise NotFound("no such invitation")
    row = session.scalar(select(Invitation).where(Invitation.token_hash == hash_token(token)))
    if (
        row is None
        or row.accepted_at is not None
        or row.revoked_at is not None
        or row.expires_at <= clock.now()
    ):
        raise NotFound("this invitation is not valid: it may have expired or been used already")
    return row


def accept_invitation(session: Session, clock: Clock, token: str) -> User:
    """Use the invitation up (once, even when two browsers accept at the same moment) and
    return the invitee's user, created on first acceptance."""
    row = find_invitation(session, clock, token)
    now = clock.now()
    used = session.execute(
        update(Invitation)
        .where(
            Invitation.id == row.id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .values(accepted_at=now)
    ).rowcount
    if used != 1:
        raise NotFound("this invitation has been used already")
    user = session.scalar(
        select(User).where(User.company_id == row.company_id, User.email == row.email)
    )
    if user is None:
        user = User(company_id=row.company_id, email=row.email, created_at=now, role=row.role)
        session.add(user)
    user.last_sign_in_at = now
    session.flush()
    session.execute(update(Invitation).where(Invitation.id == row.id).values(user_id=user.id))
    _withdraw_waiting(session, row.company_id, row.email, now)
    log_activity(
        session, clock, row.company_id, "user.joined", f"{row.email} accepted the invitation"
    )
    return user


def _withdraw_waiting(session: Session, company_id: int, email: str, now: datetime) -> None:
    """Withdraw the company's invitations to this address still waiting to be accepted."""
    session.execute(
        update(Invitation)
        .where(
            Invitation.company_id == company_id,
            Invitation.email == email,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


def revoke_invitation(
    session: Session, clock: Clock, company: Company, by: User, invitation_id: int
) -> Invitation:
    _require_owner(session, company, by)
    row = session.get(Invitation, invitation_id)
    if row is None or row.company_id != company.id:
        raise NotFound("no such invitation")
    if row.accepted_at is None and row.revoked_at is None:
        row.revoked_at = clock.now()
        log_activity(
            session,
            clock,
            company.id,
            "user.invitation_revoked",
            f"{row.email}'s invitation was withdrawn by {by.email}",
        )
    return row


def remove_user(session: Session, clock: Clock, company: Company, by: User, user_id: int) -> str:
    """An owner removes another user: their sessions end with the row (a cookie naming a user
    that no longer exists signs nobody in). Nobody removes themselves, nor the last owner."""
    _require_owner(session, company, by)
    user = _company_user(session, company, user_id)
    if user.id == by.id:
        raise ArbridgeError("you cannot remove yourself: ask another owner")
    if user.role == "owner" and _owner_count(session, company.id) <= 1:
        raise ArbridgeError("the last owner cannot be removed")
    email = user.email
    session.delete(user)
    log_activity(session, clock, company.id, "user.removed", f"{email} was removed by {by.email}")
    return email


def change_role(
    session: Session, clock: Clock, company: Company, by: User, user_id: int, role: str
) -> User:
    """An owner changes a teammate's role; the company always keeps one owner at least. The
    change applies from the user's next request (roles are read on every request)."""
    _require_owner(session, company, by)
    role = _check_role(role)
    # Locked, so two owners demoting each other at once cannot leave the company ownerless.
    owners = session.scalars(
        select(User.id)
        .where(User.company_id == company.id, User.role == "owner")
        .order_by(User.id)
        .with_for_update()
    ).all()
    user = _company_user(session, company, user_id)
    if user.role == role:
        return user
    if user.role == "owner" and len(owners) <= 1:
        raise ArbridgeError(f"{user.email} is the last owner: make someone else an owner first")
    before, user.role = user.role, role
    session.flush()
    log_activity(
        session,
        clock,
        company.id,
        "user.role_changed",
        f"{user.email} is now {role} (was {before}), changed by {by.email}",
    )
    return user


def _company_user(session: Session, company: Company, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or user.company_id != company.id:
        raise NotFound("no such user")
    return user


def _owner_count(session: Session, company_id: int) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.company_id == company_id, User.role == "owner")
        )
        or 0
    )


def _require_owner(session: Session, company: Company, by: User) -> User:
    if by.company_id != company.id or by.role != "owner":
        raise SignInRefused("Only an owner can do this", "Ask an owner of the company.", 403)
    return by


def pending_invitations(session: Session, clock: Clock, company_id: int) -> list[Invitation]:
    return list(
        session.scalars(
            select(Invitation)
            .where(
                Invitation.company_id == company_id,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
                Invitation.expires_at > clock.now(),
            )
            .order_by(Invitation.id)
        )
    )


# ---------------------------------------------------------------------------------------------
# Session versions.


def end_sessions(session: Session, user_id: int) -> None:
    """Every session cookie issued to this user so far stops working."""
    session.execute(
        update(User).where(User.id == user_id).values(session_version=User.session_version + 1)
    )


# ---------------------------------------------------------------------------------------------
# "Email me a sign-in link".

SIGN_IN_LINKS_PER_HOUR = 3


def email_sign_in_links(session: Session, clock: Clock, email: str) -> int:
    """Queue a one-time sign-in link to every user with this address (one per company they
    belong to), at most SIGN_IN_LINKS_PER_HOUR an hour each; the link is made as the email goes
    out. Returns how many were queued; the caller answers the same whatever the number."""
    address = email.strip()
    if not address or len(address) > 254 or "@" not in address:
        return 0
    users = session.scalars(
        select(User).where(func.lower(User.email) == address.lower()).order_by(User.id).limit(10)
    ).all()
    queued = 0
    now = clock.now()
    for user in users:
        recent = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                OutboxMessage.key.like(f"sign-in-link:{user.id}:%"),
                OutboxMessage.created_at > now - timedelta(hours=1),
            )
        )
        if recent and recent >= SIGN_IN_LINKS_PER_HOUR:
            log.warning("sign-in link for user %s not sent: %s this hour already", user.id, recent)
            continue
        company = session.get(Company, user.company_id)
        name = company.name if company is not None else "arbridge"
        enqueue(
            session,
            clock,
            company_id=user.company_id,
            kind="email",
            key=f"sign-in-link:{user.id}:{now.isoformat()}",
            payload={
                "mail": "sign_in_link",
                "user_id": user.id,
                "to": user.email,
                "subject": f"Your sign-in link for {name} on arbridge",
                "text": (
                    f"Someone asked to sign in to {name} on arbridge with this address. "
                    f"This link signs you in once:\n\n{LINK_MARK}\n\n"
                    "If it was not you, ignore this email: nothing happens unless the link is "
                    "used, and it stops working soon."
                ),
            },
        )
        queued += 1
    return queued
