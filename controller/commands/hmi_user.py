"""``boosterd hmi-user add|list|remove|passwd``: the HMI's accounts (there is no default one)."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from controller.config import ConfigError, load_config
from controller.config.schema import HmiConfig
from controller.hmi.users import ROLES, UserError, UserStore, make_user


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "hmi-user", help="add, list, remove HMI users or change a password"
    )
    p.add_argument("--config", help="station file (its hmi.users_file is used)")
    p.add_argument("--file", help=f"users file (default {HmiConfig().users_file})")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (scripts)"
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="create a user")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--lang", choices=("id", "en"), help="the user's language on the HMI")
    actions.add_parser("list", help="list users and roles")
    rm = actions.add_parser("remove", help="delete a user")
    rm.add_argument("name")
    pw = actions.add_parser("passwd", help="set a new password")
    pw.add_argument("name")
    p.set_defaults(handler=run)


def _users_path(args: argparse.Namespace) -> str | None:
    if args.file:
        return str(args.file)
    if args.config:
        try:
            cfg = load_config(args.config)
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return None
        return (cfg.hmi or HmiConfig()).users_file
    return HmiConfig().users_file


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat it: ") != first:
        raise UserError("the two passwords differ; nothing changed")
    return first


def run(args: argparse.Namespace) -> int:
    path = _users_path(args)
    if path is None:
        return 2
    store = UserStore(path)
    try:
        if args.action == "list":
            for name, user in sorted(store.users().items()):
                print(f"{name}\t{user.role}\t{user.lang or '-'}")
        elif args.action == "add":
            store.add(make_user(args.name, args.role, _password(args), args.lang))
            print(f"user {args.name} ({args.role}) added to {path}")
        elif args.action == "passwd":
            old = store.get(args.name)
            if old is None:
                raise UserError(f"no user {args.name!r}")
            store.replace(make_user(old.name, old.role, _password(args), old.lang))
            print(f"password of {args.name} changed")
        else:
            store.remove(args.name)
            print(f"user {args.name} removed")
    except (UserError, OSError) as exc:
        print(f"boosterd hmi-user: {exc}", file=sys.stderr)
        return 1
    return 0
