import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver

from imgpipe_runtime.netpolicy import BlockedAddress, GuardedResolver, NetPolicy, check_literal, is_public

BLOCKED = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "0.0.0.0",
    "100.64.0.1",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "2002:7f00:1::",
    "64:ff9b::7f00:1",
]


@pytest.mark.parametrize("address", BLOCKED)
def test_non_public_addresses_are_refused(address):
    assert not is_public(ipaddress.ip_address(address))
    with pytest.raises(BlockedAddress):
        NetPolicy().check("h", 80, address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_permitted(address):
    NetPolicy().check("h", 80, address)


def test_allow_list_of_cidrs_and_host_port_entries():
    policy = NetPolicy.parse("127.0.0.0/8, ::1/128 ,images.internal:9000,10.0.0.5:8080")
    policy.check("localhost", 1234, "127.0.0.1")
    policy.check("x", 1, "::1")
    policy.check("images.internal", 9000, "10.9.9.9")
    policy.check("anything", 8080, "10.0.0.5")
    with pytest.raises(BlockedAddress):
        policy.check("images.internal", 9001, "10.9.9.9")
    with pytest.raises(BlockedAddress):
        policy.check("other", 8081, "10.0.0.5")


def test_a_bad_allow_list_entry_is_a_clear_error():
    with pytest.raises(ValueError, match="neither a CIDR nor host:port"):
        NetPolicy.parse("not an entry")


def test_ip_literal_urls_are_checked_without_resolving():
    with pytest.raises(BlockedAddress):
        check_literal("http://169.254.169.254/latest/meta-data", NetPolicy())
    with pytest.raises(BlockedAddress):
        check_literal("http://[::ffff:7f00:1]:8080/x", NetPolicy())
    for spelling in ("http://１２７．０．０．１/x", "http://169。254。169。254/x", "http://①②⑦.0.0.1:８０８０/x"):
        with pytest.raises(BlockedAddress):  # the host as the HTTP client normalises it
            check_literal(spelling, NetPolicy())
    check_literal("http://example.test/x", NetPolicy())  # names are left to the resolver
    check_literal("http://127.0.0.1:9000/x", NetPolicy.parse("127.0.0.1:9000"))


class RebindingDns(AbstractResolver):
    """Answers each lookup with the next list of addresses: public first, then private."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)

    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [
            {"hostname": host, "host": address, "port": port, "family": family, "proto": 0, "flags": 0}
            for address in self.answers.pop(0)
        ]

    async def close(self) -> None:
        pass


async def test_the_address_connected_to_is_the_address_checked_on_every_lookup():
    resolver = GuardedResolver(NetPolicy(), RebindingDns(["93.184.216.34"], ["127.0.0.1"], ["10.0.0.7", "8.8.8.8"]))
    assert [r["host"] for r in await resolver.resolve("images.example", 80)] == ["93.184.216.34"]
    with pytest.raises(BlockedAddress):
        await resolver.resolve("images.example", 80)  # the rebinding answer is refused, not connected to
    assert [r["host"] for r in await resolver.resolve("images.example", 80)] == ["8.8.8.8"]


async def test_the_connector_refuses_an_ipv6_looking_host_it_cannot_read():
    from imgpipe_runtime.netpolicy import GuardedConnector

    connector = GuardedConnector(NetPolicy.parse("0.0.0.0/0,::/0"))
    try:
        with pytest.raises(BlockedAddress):
            await connector._resolve_host("::ffff:127.0.0.01", 80)
    finally:
        await connector.close()
