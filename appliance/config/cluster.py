"""`policies/cluster.toml`: scale-out over NATS JetStream and how a node authenticates."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator

from appliance.config.base import Strict

_NATS_SCHEMES = ("nats", "tls")
NATS_URL_FORM = ("must be nats://host:port (or tls://) with a port from 1 to 65535, "
                 "comma-separated")


def nats_url_problem(url: str) -> str | None:
    """Why `url` (NATS server URLs, comma-separated) is not one nats-py can use, as the end
    of a sentence (`NATS_URL_FORM`), or None. A port out of range or not a number was
    handed to nats-py before, which said only `Error` (read as refused credentials)."""
    for one in filter(None, (u.strip() for u in url.split(","))):
        try:
            parts = urlsplit(one)
            port = parts.port  # ValueError: out of 0-65535, or not a number
        except ValueError:
            return NATS_URL_FORM
        # the scheme as written: nats-py takes 'TLS://h:p' for the host 'TLS' (urlsplit
        # lowers it), so it said no server answers, and the TLS asked for was never checked
        if one.split(":", 1)[0] not in _NATS_SCHEMES or not parts.hostname or port == 0:
            return NATS_URL_FORM
    return None


def shown_url(url: str) -> str:
    """`url` as a message may show it: without the user and password a URL may carry (a
    gateway's), which would otherwise reach its log."""
    out = []
    for one in filter(None, (u.strip() for u in url.split(","))):
        try:
            parts = urlsplit(one)
        except ValueError:
            out.append("(a URL that is not nats://host:port)")
            continue
        if "@" in parts.netloc:
            parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
        shown = urlunsplit(parts)  # its scheme as written (urlsplit lowers it)
        out.append(one[:len(parts.scheme)] + shown[len(parts.scheme):] if parts.scheme
                   else shown)
    return ",".join(out)


class ClusterSecurity(Strict):
    """How a node authenticates to NATS and protects the connection (all paths, all optional)."""

    creds_file: str = ""  # a NATS .creds file (user JWT + nkey seed)
    nkey_seed_file: str = ""  # a bare nkey seed file (nkey authentication)
    user: str = ""  # user/password authentication: the user ...
    password_file: str = ""  # ... and a file (mode 0600) holding only the password
    tls_ca_file: str = ""  # CA that signed the server's certificate; set = TLS on
    tls_cert_file: str = ""  # client certificate (mutual TLS), with tls_key_file
    tls_key_file: str = ""
    # 32-byte keys (mode 0600) sealing every payload on the bus with AES-256-GCM; a node
    # started with a NATS URL needs it, unless plain_bus = true says plain text is accepted
    bus_key_file: str = ""
    plain_bus: bool = False  # the explicit opt-out: prompts cross the bus and JetStream in clear
    # turning sealing on without a pause: with a bus key, plain messages (from gateways not
    # yet given the key) are taken too; sealed ones must still open. Remove once none come.
    accept_plain: bool = False

    @field_validator("*")
    @classmethod
    def _absolute(cls, value: Any, info: Any) -> Any:
        if (isinstance(value, str) and value and info.field_name != "user"
                and not value.startswith("/")):
            raise ValueError("must be an absolute path, or empty")
        return value

    @model_validator(mode="after")
    def _one_choice(self) -> ClusterSecurity:
        if self.plain_bus and self.bus_key_file:
            raise ValueError("plain_bus = true and a bus_key_file contradict each other: "
                             "keep one (accept_plain = true takes both while gateways move "
                             "to sealing)")
        if self.accept_plain and not self.bus_key_file:
            raise ValueError("accept_plain = true is for moving to sealing and needs a "
                             "bus_key_file (without a key, plain_bus = true)")
        return self


class ClusterSettings(Strict):
    """`policies/cluster.toml`: scale-out over NATS JetStream (off while `url` is empty)."""

    url: str = ""  # "nats://127.0.0.1:4222", several comma-separated; "" = no cluster
    partitions: int = Field(default=16, ge=1, le=1024)
    own: str = ""  # partitions this node consumes, e.g. "0-7" or "0-3,12"; "" = all
    node: str = Field(default="", max_length=64)  # this node's name; "" = the host name
    stream: str = Field(default="SEMTRACE", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    replicas: int = Field(default=1, ge=1, le=5)  # JetStream replicas of the stream
    ack_wait_s: float = Field(default=30.0, ge=1.0, le=3600.0)  # redelivery after this
    fetch_batch: int = Field(default=64, ge=1, le=4096)  # messages pulled at once per partition
    owner_ttl_s: float = Field(default=15.0, ge=2.0, le=600.0)  # a silent owner's claim expires
    security: ClusterSecurity = ClusterSecurity()

    @field_validator("url")
    @classmethod
    def _urls(cls, value: str) -> str:
        if nats_url_problem(value):
            raise ValueError(f"{NATS_URL_FORM}, or empty")
        for url in filter(None, (u.strip() for u in value.split(","))):
            if urlsplit(url).password:
                raise ValueError("must not carry a password: use security.password_file")
        return value

    @field_validator("own")
    @classmethod
    def _own(cls, value: str) -> str:
        from appliance.cluster.partition import parse_own

        if value:
            parse_own(value, 1 << 20)  # syntax here; the range is checked against partitions
        return value

    def owned(self) -> list[int]:
        """The partitions this node consumes (all when `own` is empty)."""
        from appliance.cluster.partition import parse_own

        return parse_own(self.own, self.partitions) if self.own else list(range(self.partitions))
