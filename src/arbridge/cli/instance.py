"""The instance itself: `init` (the database and the secret file) and `rotate-keys`."""

from __future__ import annotations

import click

from arbridge.cli.common import load_settings
from arbridge.config import Settings
from arbridge.errors import ArbridgeError
from arbridge.wording import counted, verb


@click.command()
@click.option("--upgrade", is_flag=True, help="Apply new migrations to an existing database.")
def init(upgrade: bool) -> None:
    """Create the database and the instance secret file (mode 0600).

    The secret file holds the Flask secret key and the token-encryption key;
    ARBRIDGE_ENCRYPTION_KEYS overrides its keys. Running init a second time
    changes nothing and says so (use --upgrade after installing a new version).
    """
    settings = load_settings()
    message = initialise(settings, upgrade=upgrade)
    click.echo(message)


def initialise(settings: Settings, *, upgrade: bool = False) -> str:
    from arbridge.crypto import Keyring, create_secret_file
    from arbridge.sync import db
    from arbridge.sync.store import check_keys

    settings.instance_path.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(settings.database_url)
    path = db.sqlite_path(engine)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        current = db.current_revision(engine)
        if current is not None and not upgrade:
            # Not an error (the README promises it): a script may run init on every start.
            return (
                f"arbridge is already initialised in {settings.database_url.split('@')[-1]}; "
                "nothing was changed (use `arbridge init --upgrade` to apply new migrations)."
            )
        if current is None and not db.is_empty(engine):
            raise ArbridgeError(
                "the database already holds tables that are not arbridge's; "
                "point ARBRIDGE_DATABASE_URL at an empty database"
            )
        created = None
        if not settings.secret_key or not settings.encryption_keys:
            created = create_secret_file(settings.instance_path)
            settings = Settings.from_env()
        keyring = Keyring(settings.require_secrets().encryption_keys)
        db.upgrade(engine)
        with db.transaction(db.session_factory(engine)) as session:
            check_keys(session, keyring)
        if path is not None:
            path.chmod(0o600)  # the database holds customers' data and encrypted tokens
    finally:
        engine.dispose()
    lines = [f"Database ready at migration {db.head_revision()}."]
    if created:
        lines.append(
            f"Secrets written to {created} (mode 0600). Back it up: without it, stored tokens are lost."
        )
    return "\n".join(lines)


@click.command("rotate-keys")
@click.option(
    "--drop-old",
    is_flag=True,
    help="After re-encrypting, remove old keys from the secret file (refused while a stored "
    "secret still needs one).",
)
def rotate_keys(drop_old: bool) -> None:
    """Re-encrypt every stored secret with the newest encryption key.

    With keys in ARBRIDGE_ENCRYPTION_KEYS, put the new key first in that list
    and run this. With the instance secret file, this adds a new key to it;
    running servers re-read the file, so they need no restart.
    """
    from arbridge.crypto import (
        Keyring,
        drop_old_keys_from_secret_file,
        new_key,
        prepend_key_to_secret_file,
        restore_keys_to_secret_file,
    )
    from arbridge.runtime import Runtime
    from arbridge.sync.db import transaction
    from arbridge.sync.store import rotate_secrets, secrets_needing_old_keys

    settings = load_settings()
    rt = Runtime.open(settings)  # proves the current keys read the database first
    click.get_current_context().call_on_close(rt.close)
    if not settings.encryption_keys_from_env:
        prepend_key_to_secret_file(settings.instance_path, new_key())
        settings = Settings.from_env()
    keyring = Keyring(settings.encryption_keys)
    with transaction(rt.sessions) as session:
        count = rotate_secrets(session, keyring)

    def still_needing_old_keys() -> int:
        with rt.sessions() as session:
            return secrets_needing_old_keys(session, keyring)

    def refuse(stale: int) -> ArbridgeError:
        return ArbridgeError(
            f"{counted(stale, 'stored secret')} {verb(stale, 'was', 'were')} written with an old "
            "key while this ran (by a server "
            "that has not picked up the new key?), so the old keys were kept: run "
            "`arbridge rotate-keys --drop-old` again"
        )

    if drop_old:
        stale = still_needing_old_keys()
        if stale:
            raise refuse(stale)
        if settings.encryption_keys_from_env:
            click.echo(
                "Every stored secret now uses the newest key: remove the old ones from "
                "ARBRIDGE_ENCRYPTION_KEYS, and restart servers started with the old list."
            )
        else:
            dropped = drop_old_keys_from_secret_file(settings.instance_path)
            # A server may have written between the check and the drop: look once more, and
            # put the old keys back rather than lose what it wrote.
            stale = still_needing_old_keys()
            if stale:
                restore_keys_to_secret_file(settings.instance_path, dropped)
                raise refuse(stale)
    click.echo(f"Re-encrypted {counted(count, 'stored secret')} with the newest key.")
