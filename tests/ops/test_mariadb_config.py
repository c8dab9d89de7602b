"""deploy/mariadb/zenscall.cnf: a real MariaDB started with exactly that file runs with its values,
docker-compose mounts it into the mariadb service, and the bare-metal guide installs it."""

from __future__ import annotations

import configparser
import re

import pymysql
import pytest
import yaml

from bench.private_mariadb import DEFAULT_CNF, PrivateMariaDB
from core.settings import ROOT

_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30}


def settings() -> dict[str, str]:
    parser = configparser.ConfigParser(allow_no_value=True, strict=True)
    parser.read_string(DEFAULT_CNF.read_text())
    assert parser.sections() == ["mariadbd"]
    return dict(parser["mariadbd"])


def expected(value: str) -> str:
    """The server's way of showing a value of the file (sizes in bytes)."""
    match = re.fullmatch(r"(\d+)([KMG])", value)
    return str(int(match.group(1)) * _UNITS[match.group(2)]) if match else value


@pytest.fixture(scope="module")
def server():
    with PrivateMariaDB(DEFAULT_CNF) as mariadb:
        yield mariadb


def test_a_server_started_with_the_file_runs_with_its_values(server):
    wanted = settings()
    assert {"innodb_buffer_pool_size", "innodb_flush_log_at_trx_commit", "max_connections"} <= set(wanted)
    running = server.variables(*wanted)
    assert running == {name: expected(value) for name, value in wanted.items()}


def test_the_pool_is_a_quarter_of_the_small_host_the_file_assumes():
    text = DEFAULT_CNF.read_text()
    assert "4 GB" in text
    pool = int(expected(settings()["innodb_buffer_pool_size"]))
    assert pool <= 4 * 2**30 // 4


def test_a_database_created_without_a_character_set_is_utf8mb4(server):
    """As docker-compose's MARIADB_DATABASE is: the tables Alembic creates inherit it."""
    conn = pymysql.connect(host="127.0.0.1", port=server.port, user="root")
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE zc_charset_check")
            cur.execute("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                        "WHERE SCHEMA_NAME = 'zc_charset_check'")
            assert cur.fetchone() == ("utf8mb4", "utf8mb4_unicode_ci")
    finally:
        conn.close()


def test_compose_mounts_the_file_into_the_mariadb_service():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["mariadb"]["volumes"]
    assert "./deploy/mariadb/zenscall.cnf:/etc/mysql/conf.d/zenscall.cnf:ro" in mounts
    assert (ROOT / "deploy/mariadb/zenscall.cnf").resolve() == DEFAULT_CNF.resolve()


def test_the_bare_metal_guide_installs_the_file_after_debians_own():
    readme = (ROOT / "README.md").read_text()
    copy = re.search(r"cp /opt/zenscall/deploy/mariadb/zenscall\.cnf /etc/mysql/mariadb\.conf\.d/(\S+\.cnf)", readme)
    assert copy is not None
    assert copy.group(1) > "50-server.cnf"  # read later, so its values win
    assert readme.index(copy.group(0)) < readme.index("systemctl restart mariadb")
