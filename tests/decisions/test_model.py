from ipaddress import ip_network

from mailward.decisions.model import Action, Decision


def test_targets() -> None:
    ban = Decision(ts=0, target="198.51.100.0/24", action=Action.BAN, rule="prefix", until=3600)
    assert ban.network == ip_network("198.51.100.0/24")
    assert ban.to_json()["until"] == "1970-01-01T01:00:00Z"
    user = Decision(ts=0, target="user:bob", action=Action.PROTECT_USER, rule="distributed_user")
    assert user.is_user and user.network is None
