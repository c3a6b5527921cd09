"""Issue and revoke API keys: `python -m api.keys create --tenant acme [--admin] [--label ci]`."""

from __future__ import annotations

import argparse

from api.auth import create_key, revoke_key
from models.db import prepare_database, session_scope


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="print a new key (shown once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--admin", action="store_true", help="the key sees every tenant's jobs")
    create.add_argument("--label")
    revoke = sub.add_parser("revoke")
    revoke.add_argument("key")
    args = parser.parse_args(argv)
    prepare_database()
    with session_scope() as session:
        if args.command == "create":
            print(create_key(session=session, tenant=args.tenant, admin=args.admin, label=args.label))
            return 0
        if revoke_key(session=session, key=args.key):
            print("revoked")
            return 0
    print("no such key")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
